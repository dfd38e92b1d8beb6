//! The PEFT-style trainer of tunebench: it should feel like HF PEFT to someone who knows PEFT.
//!
//! - [`LoraConfig`]: PEFT's fields and defaults, read from and written to `adapter_config.json`.
//! - [`attach_lora`]: frozen base, A Kaiming-uniform (a = √5), B zeros, scale `alpha/r` or
//!   `alpha/√r`, dropout on the adapter input only; plain Burn autodiff ([`PeftTrainer`]).
//! - [`save_adapter`] / [`Adapter`]: `adapter_model.safetensors` with PEFT's keys, shapes, F32.
//! - [`merge_adapter`]: the separate merge step into an HF checkpoint in the base's dtype.

pub mod run;
pub mod trainer;

pub use run::train_peft;
/// The PEFT format lives in tb-train, where both trainers reach it.
pub use tb_train::lora::{
    adapter_tensors, attach_lora, save_adapter, Adapter, InitLoraWeights, LoraConfig,
    TargetModules, ADAPTER_CONFIG, ADAPTER_WEIGHTS,
};
pub use tb_train::merge::{merge_adapter, merge_into_dir, MergeReport};
/// What both trainers take and return.
pub use tb_train::{TrainOutcome, TrainRequest};
pub use trainer::PeftTrainer;
