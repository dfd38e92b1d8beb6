//! Unsloth-style fused training ops for Burn 0.21.
//!
//! The ops live in one backend extension, [`FusedBackend`]. Each op has
//! - a kernel for the inner backend (a Rust kernel on [`burn::backend::Flex`], parallel with
//!   rayon; matmul-shaped ops are written once over the backend's own matmul),
//! - an implementation for [`burn::backend::Autodiff`] whose backward pass is written by hand
//!   and registered through Burn's autodiff `Backward` trait,
//! - a reference built from plain tensor ops ([`reference`]) that the tests differentiate with
//!   Burn's autodiff and compare against.
//!
//! Call the ops through the functions in [`ops`]; they take plain tensors, so any model struct
//! (PEFT-style or Unsloth-style) can use them.

mod autodiff;
mod backend;
mod error;
mod flex;
pub mod ops;
mod prim;
pub mod reference;

pub use backend::{AttentionSaved, CeSaved, FusedBackend, LoraGrads, LoraWeights, MlpSaved};
pub use error::{FusedError, Result};
