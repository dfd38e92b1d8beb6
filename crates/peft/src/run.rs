//! `tunebench train peft`: load the base, tokenise the dataset, attach LoRA, run the shared
//! loop, save the PEFT adapter and the run summary.

use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use tb_model::{CrossEntropyBackend, ModelBackend};
use tb_train::{
    run_training, DeviceKind, LoopOptions, Result, TrainOutcome, TrainRequest, Trainer,
};

use tb_train::lora::save_adapter;

use crate::trainer::PeftTrainer;

/// Trains a PEFT-style LoRA on the configured device (`[train] device`, the CPU by default)
/// and returns the run folder, its adapter and summary.
///
/// Dropout draws from the backend's process-wide RNG, reseeded from the experiment seed before
/// every micro-batch: one training per process is deterministic; two trainings running at the
/// same time in one process are not.
///
/// # Errors
/// Besides loading and training failures, a device this build has no backend for (see
/// [`DeviceKind::not_built`]), a `[model] base_quant` other than `"none"` (the PEFT-style
/// trainer has no 4-bit base path, and refuses rather than train a dense base) and GGUF types
/// asked for (PEFT-style runs merge and export separately).
pub fn train_peft(request: &TrainRequest) -> Result<TrainOutcome> {
    tb_train::on_device!(request, train_on, "")
}

fn train_on<B>(
    request: &TrainRequest,
    device: B::Device,
    backend_name: &str,
) -> Result<TrainOutcome>
where
    B: AutodiffBackend + ModelBackend + CrossEntropyBackend,
    B::InnerBackend: ModelBackend + CrossEntropyBackend,
{
    let started = Instant::now();
    let config = &request.config;
    if config.train.device != DeviceKind::Cpu {
        config.train.device.probe::<B>(&device)?;
    }
    if !config.model.base_quant.is_none() {
        return Err(tb_train::Error::ConfigValue {
            field: "model.base_quant".into(),
            message: format!(
                "`{}`: the PEFT-style trainer has no 4-bit base; set base_quant = \"none\" or train with `train unsloth`",
                config.model.base_quant
            ),
        });
    }
    if !request.gguf.is_empty() {
        return Err(tb_train::Error::ConfigValue {
            field: "gguf".into(),
            message: "the PEFT-style trainer writes the adapter only: merge it with `tunebench merge`, then `tunebench export gguf`".into(),
        });
    }
    let prepared =
        tb_train::session::prepare::<B>(config, "peft", request.resume.as_deref(), &device)?;
    let mut trainer = PeftTrainer::<B> {
        model: prepared.model,
        pad_id: prepared.pad_id,
        device,
        backend_name: backend_name.into(),
    };
    let (run, lora) = (prepared.run, prepared.lora);
    let (train, eval) = (prepared.train, prepared.eval);
    let options = LoopOptions {
        progress: request.progress,
        resume: request.resume.is_some(),
    };
    let outcome = run_training(&mut trainer, config, &train, &eval, &run, &options)?;
    let adapter_dir = run.path.join("adapter");
    save_adapter(&adapter_dir, &lora, &outcome.params)?;
    let summary = tb_train::session::summarize(
        trainer.method(),
        &trainer.backend(),
        config,
        &run,
        &outcome,
        prepared.data,
        started,
        &["adapter"],
    )?;
    run.write_summary(&summary)?;
    Ok(TrainOutcome {
        run: run.path.clone(),
        adapter: adapter_dir,
        summary,
        ggufs: Vec::new(),
        modelfile: None,
        export_s: None,
    })
}
