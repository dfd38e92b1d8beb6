//! The 4-bit frozen base: the packed formats (NF4 as bitsandbytes, Q4_K as tb-gguf/llama.cpp),
//! packing a model's adapted projections, and training with `[model] base_quant`.
//!
//! Run one group with e.g. `cargo test -p tb-unsloth --test packed_base formats`.

mod formats;
mod trainer;
mod training;
