//! LoRA adapters as both trainers use them: PEFT's `LoraConfig` and `adapter_config.json`,
//! initialisation and attachment to a model, PEFT-format adapter folders and their export as
//! llama.cpp LoRA GGUFs.

pub mod adapter;
pub mod gguf_export;
pub mod init;
pub mod peft_config;
pub mod trainable;

pub use adapter::{
    adapter_tensors, peft_key, save_adapter, Adapter, ModuleAdapter, ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
};
pub use gguf_export::{export_lora_adapter, LoraExportReport};
pub use init::{attach_lora, branch_from_peft, transpose, BranchShape};
pub use peft_config::{InitLoraWeights, LoraConfig, TargetModules};
pub use trainable::{
    adapter_grads, host_values, peft_grad_pair, projection_grads, set_adapter_tensors,
};
