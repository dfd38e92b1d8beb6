//! The Unsloth-style trainer of tunebench and its fused training ops for Burn 0.21.
//!
//! The trainer ([`train_unsloth`], [`UnslothTrainer`]) runs the decoder through the fused ops
//! ([`fused_model`]) on padding-free packed micro-batches with the chunked loss and per-layer
//! activation checkpointing (a whole decoder layer with a hand-written backward,
//! [`layer_backward`], recomputing the layer or only its attention half), saves a PEFT-format adapter, and with `--gguf` merges it into the
//! unquantised base, writes GGUFs through tb-gguf and an Ollama [`modelfile`].
//!
//! The ops live in one backend extension, [`FusedBackend`]. Each op has
//! - kernels for the inner backend: a Rust kernel on [`burn::backend::Flex`], parallel with
//!   rayon, and (feature `cubecl`, enabled by `wgpu`/`cuda`) a CubeCL kernel for every
//!   `CubeBackend` (CUDA, wgpu); matmul-shaped ops are written once over the backend's own
//!   matmul; other backends get the tensor-op versions in [`fallback`],
//! - an implementation for [`burn::backend::Autodiff`] whose backward pass is written by hand
//!   and registered through Burn's autodiff `Backward` trait,
//! - a reference built from plain tensor ops ([`reference`](mod@reference)) that the tests differentiate with
//!   Burn's autodiff and compare against.
//!
//! Call the ops through the functions in [`ops`]; they take plain tensors, so any model struct
//! (PEFT-style or Unsloth-style) can use them.
//!
//! # Limits
//! - Flex and CubeCL kernels compute in f32 (other float dtypes are converted on the way in).
//! - The CubeCL attention kernels run one unit per (token, head) with an online softmax: exact
//!   and O(seq) memory, but not tiled like FlashAttention (no shared-memory reuse of K/V).
//! - No double backward: the hand-written backward passes run untracked.
//! - LoRA without dropout or bias (Unsloth's fast path has the same condition).
//! - RoPE and attention take `[batch, seq, heads, head_dim]` (the projections' natural layout);
//!   no gradient flows into the RoPE `cos`/`sin` tables or the segment ids.
//! - Attention has no sliding window; query `i` sees key `j` when `j <= i` and both tokens
//!   carry the same segment id (any id values work).
//! - Cross-entropy targets must be in `0..vocab` or [`ops::IGNORE_INDEX`].

mod autodiff;
mod backend;
#[cfg(feature = "cubecl")]
mod cube;
mod error;
pub mod fallback;
mod flex;
pub mod fused_model;
pub mod layer_backward;
pub mod modelfile;
pub mod ops;
pub mod packed_base;
mod prim;
pub mod reference;
pub mod run;
pub mod trainer;

pub use backend::{
    AttentionSaved, BaseWeight, CeGradients, CeSaved, FusedBackend, LoraGrads, LoraWeights,
    MlpSaved, Precision,
};
pub use error::{FusedError, Result};
pub use run::train_unsloth;
/// What both trainers take and return.
pub use tb_train::{TrainOutcome, TrainRequest};
pub use trainer::UnslothTrainer;
