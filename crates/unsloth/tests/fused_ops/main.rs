//! Fused ops against their references: values and every gradient, on odd shapes.
//!
//! Run one group with e.g. `cargo test -p tb-unsloth --test fused_ops attention`.

mod attention;
mod common;
mod cross_entropy;
mod fallback;
mod finite_diff;
mod lora;
mod packed;
mod plain_backend;
mod rms_norm;
mod rope;
mod swiglu;
