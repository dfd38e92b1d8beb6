//! What both tunebench trainers share.
//!
//! - [`ExperimentConfig`]: the TOML experiment file (unknown keys are errors).
//! - [`AdamW`], [`clip_global_norm`], [`LrSchedule`]: PyTorch/HF semantics, host-side state.
//! - [`RunDir`]: `runs/<utc>-<method>/` with `config.toml`, `metrics.jsonl`, `summary.json`.
//! - [`TrainRequest`] → [`TrainOutcome`]: what both trainers take and return ([`on_device!`]
//!   picks the backend for both).
//! - [`Trainer`] + [`run_training`]: the shared loop (accumulation, clipping, schedule, eval
//!   loss, checkpoints and resume, progress bar, throughput and peak-memory probes).
//! - [`cross_entropy_sum`]: the plain masked loss.
//! - [`lora`]: PEFT's `LoraConfig`, LoRA initialisation, PEFT-format adapter folders and their
//!   export as llama.cpp LoRA GGUFs ([`export_lora_adapter`]).

pub mod base_eval;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod lora;
pub mod loss;
pub mod merge;
pub mod optimizer;
pub mod outcome;
pub mod probe;
pub mod run_dir;
pub mod schedule;
pub mod serving;
pub mod session;
pub mod trainer;

pub use base_eval::{BaseEvalLoss, BASE_EVAL_FILE};
pub use config::{
    ActivationCheckpointing, BaseQuant, DeviceKind, ExperimentConfig, LoraSection, ScheduleKind,
    Targets,
};
pub use error::{Error, Result};
pub use lora::{export_lora_adapter, Adapter, LoraConfig, LoraExportReport};
pub use loss::cross_entropy_sum;
pub use merge::{base_projections, merge_adapter, merge_into_dir, MergeReport};
pub use optimizer::{clip_global_norm, global_norm, AdamW, AdamWSettings, NamedTensor};
pub use outcome::{TrainOutcome, TrainRequest};
pub use probe::{peak_rss_mib, Machine};
pub use run_dir::{Artifact, MetricsTail, RunDir, RunSummary, StepMetrics, TrainData};
pub use schedule::LrSchedule;
pub use serving::{ServingPath, ServingStep};
pub use trainer::{
    eval_loss, progress_bar, progress_message, run_training, step_batch_ids, LoopOptions,
    LoopOutcome, MicroStep, Trainer,
};
