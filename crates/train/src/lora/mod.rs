//! LoRA adapters as both trainers use them: PEFT's `LoraConfig` and `adapter_config.json`,
//! initialisation and attachment to a model, and PEFT-format adapter folders.

pub mod adapter;
pub mod init;
pub mod peft_config;
pub mod trainable;

pub use adapter::{
    adapter_tensors, peft_key, save_adapter, Adapter, ModuleAdapter, ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
};
pub use init::{attach_lora, branch_from_peft, transpose, BranchShape};
pub use peft_config::{InitLoraWeights, LoraConfig, TargetModules};
pub use trainable::{
    adapter_grads, host_values, peft_grad_pair, projection_grads, set_adapter_tensors,
};
