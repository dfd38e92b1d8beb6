//! `tunebench train unsloth --config FILE [--gguf q4_k_m,q8_0,f16]`: train with the fused ops,
//! save the PEFT-format adapter, and in the same command merge it into the base, write the GGUF
//! files through tb-gguf and an Ollama Modelfile. Which GGUF types is [`TrainRequest::gguf`]:
//! the CLI fills it from `--gguf`, else from the experiment's `[export] quants`.
//!
//! Merge choice: the adapter is folded into the **unquantised** base checkpoint the run
//! started from (f32 accumulation, one rounding to the base's dtype), as Unsloth's merge does
//! since unsloth-zoo PR #810 and as PEFT's maintainers recommend; the quantised GGUF is then made
//! from that merged checkpoint, so quantisation happens once, at the end.
//!
//! With `[model] base_quant = "nf4" | "q4_k"` the adapted projections train against a 4-bit
//! base ([`crate::packed_base`]), and the merge still reloads the original weights from the
//! model folder's safetensors: QLoRA's merge (PEFT `bnb.py`, Unsloth before PR #810) folds the
//! adapter into dequant(W4) because the 16-bit weights are gone by then; we still have them,
//! and merging into them is the more faithful choice (the adapter was trained against
//! dequant(W4), a small mismatch either way; one rounding instead of two). The saved PEFT
//! adapter is the same either way.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use tb_data::TokenizedExample;
use tb_gguf::{ExportOptions, QuantMix};
use tb_model::weights::WeightSink;
use tb_model::{OllamaTemplate, Projection, TextTokenizer};
use tb_train::lora::{save_adapter, Adapter, LoraConfig};
use tb_train::session::Prepared;
use tb_train::TrainData;
use tb_train::{
    run_training, BaseQuant, DeviceKind, ExperimentConfig, LoopOptions, RunDir, ServingStep,
    TrainOutcome, TrainRequest, Trainer,
};

use crate::backend::FusedBackend;
use crate::fused_model::DEFAULT_CE_CHUNK;
use crate::modelfile::modelfile;
use crate::packed_base::{PackedBases, PackingSink, QuantFormat};
use crate::trainer::UnslothTrainer;

/// Parses `q4_k_m,q8_0,f16` into mixes (before any training starts).
pub fn parse_quants(list: &[String]) -> tb_train::Result<Vec<QuantMix>> {
    list.iter()
        .map(|q| {
            QuantMix::from_str(q).map_err(|e| tb_train::Error::ConfigValue {
                field: "--gguf".into(),
                message: format!("`{q}`: {e}"),
            })
        })
        .collect()
}

/// The packed format `[model] base_quant` asks for (`None`: dense base).
pub fn packed_format(quant: BaseQuant) -> Option<QuantFormat> {
    match quant {
        BaseQuant::None => None,
        BaseQuant::Nf4 => Some(QuantFormat::Nf4),
        BaseQuant::Q4K => Some(QuantFormat::Q4K),
    }
}

fn quant_error(e: impl std::fmt::Display) -> tb_train::Error {
    tb_train::Error::ConfigValue {
        field: "model.base_quant".into(),
        message: e.to_string(),
    }
}

/// Before anything is loaded: checks from an HF base's `config.json` that `format` can pack
/// every projection `[lora]` adapts (Q4_K needs input widths that are multiples of 256). A GGUF
/// base is checked when it is packed.
fn check_packable(config: &ExperimentConfig, format: QuantFormat) -> tb_train::Result<()> {
    let base = &config.model.base;
    if !tb_train::session::is_hf_dir(base) {
        return Ok(());
    }
    let model = tb_model::ModelConfig::from_hf_file(base.join("config.json"))?;
    let lora = LoraConfig::from_experiment(&config.lora, None);
    for layer in 0..model.num_hidden_layers {
        for p in Projection::ALL {
            let name = p.hf_module(layer);
            if lora.targets(&name) {
                let [_, d_in] = p.shape(&model);
                format
                    .check_width(&format!("{name}.weight"), d_in)
                    .map_err(quant_error)?;
            }
        }
    }
    Ok(())
}

/// Trains with the fused ops on the configured device (`[train] device`: Flex's Rust kernels on
/// the CPU by default, the CubeCL kernels on wgpu or CUDA); optionally exports GGUFs and a
/// Modelfile.
///
/// With `[model] base_quant` set, the base of every adapted projection is packed to 4 bits
/// as the loader reads it and its dense weight never kept ([`PackingSink`]); the summary's
/// backend reads `flex+fused+nf4` (or `+q4_k`) and the resolved `config.toml` records the
/// choice. `--gguf` merges into the unquantised weights reloaded from the model folder (see the
/// module docs).
///
/// # Errors
/// Besides the training and export errors, a device this build has no backend for (see
/// [`DeviceKind::not_built`]).
pub fn train_unsloth(request: &TrainRequest) -> tb_train::Result<TrainOutcome> {
    tb_train::on_device!(request, train_on, "+fused")
}

/// Refuses what the fused trainer cannot do, before anything is loaded.
fn check_request(config: &ExperimentConfig, quants: &[QuantMix]) -> tb_train::Result<()> {
    if config.lora.dropout != 0.0 {
        return Err(tb_train::Error::ConfigValue {
            field: "lora.dropout".into(),
            message: format!(
                "{} is not supported by the fused trainer (like Unsloth's fast path it needs 0); use `train peft` for dropout",
                config.lora.dropout
            ),
        });
    }
    let base = &config.model.base;
    if !quants.is_empty() && !tb_train::session::is_hf_dir(base) {
        return Err(tb_train::Error::ConfigValue {
            field: "model.base".into(),
            message: format!(
                "{}: writing GGUFs after training (`--gguf`, or the experiment's `[export] quants`) merges into an HF model folder; import the GGUF first with `tunebench import-gguf`, or pass `--gguf none`",
                base.display()
            ),
        });
    }
    if let Some(format) = packed_format(config.model.base_quant) {
        check_packable(config, format)?;
    }
    Ok(())
}

/// Loads the model (packing the adapted bases to 4 bits as they are read when
/// `[model] base_quant` asks for it), the data and the run folder, and builds the trainer.
fn build_trainer<B: AutodiffBackend + FusedBackend>(
    request: &TrainRequest,
    device: B::Device,
    backend_name: &str,
) -> tb_train::Result<(UnslothTrainer<B>, Loaded)>
where
    B::InnerBackend: FusedBackend,
{
    let config = &request.config;
    let format = packed_format(config.model.base_quant);
    // With a 4-bit base, the adapted projections are packed as the loader reads them: their
    // dense weights never exist together.
    let mut sink = format
        .map(|format| PackingSink::new(format, LoraConfig::from_experiment(&config.lora, None)));
    let prepared = tb_train::session::prepare_with::<B>(
        config,
        "unsloth",
        request.resume.as_deref(),
        &device,
        sink.as_mut().map(|s| s as &mut dyn WeightSink),
    )?;
    let (bases, backend_name) = match (format, sink) {
        (Some(format), Some(sink)) => {
            let bases = sink.into_bases(&prepared.model).map_err(quant_error)?;
            tracing::info!(
                %format,
                projections = bases.len(),
                packed_mib = bases.packed_bytes() as f64 / (1 << 20) as f64,
                "frozen bases of the adapted projections packed to 4 bits while loading"
            );
            release_freed_memory();
            (bases, format!("{backend_name}+{}", config.model.base_quant))
        }
        _ => (PackedBases::dense(), backend_name.to_string()),
    };
    let Prepared {
        model,
        tokenizer,
        pad_id,
        train,
        eval,
        data,
        lora,
        run,
    } = prepared;
    let trainer = UnslothTrainer::<B> {
        model,
        bases,
        pad_id,
        // Every example of a micro-batch fits one row: padding-free, like Unsloth's
        // `padding_free` collator (positions restart per example, attention stays inside it).
        row_len: config.data.max_seq_len * config.train.micro_batch.max(1),
        ce_chunk: DEFAULT_CE_CHUNK,
        checkpoint_layers: config.train.activation_checkpointing,
        device,
        backend_name,
    };
    let loaded = Loaded {
        tokenizer,
        train,
        eval,
        data,
        lora,
        run,
    };
    Ok((trainer, loaded))
}

/// What training and export need of [`Prepared`] besides the model.
struct Loaded {
    tokenizer: TextTokenizer,
    train: Vec<TokenizedExample>,
    eval: Vec<TokenizedExample>,
    data: TrainData,
    lora: LoraConfig,
    run: RunDir,
}

fn train_on<B: AutodiffBackend + FusedBackend>(
    request: &TrainRequest,
    device: B::Device,
    backend_name: &str,
) -> tb_train::Result<TrainOutcome>
where
    B::InnerBackend: FusedBackend,
{
    let started = Instant::now();
    let config = &request.config;
    if config.train.device != DeviceKind::Cpu {
        config.train.device.probe::<B>(&device)?;
    }
    let quants = parse_quants(&request.gguf)?;
    check_request(config, &quants)?;
    let (mut trainer, loaded) = build_trainer::<B>(request, device, backend_name)?;
    let run = loaded.run;
    let options = LoopOptions {
        progress: request.progress,
        resume: request.resume.is_some(),
    };
    let outcome = run_training(
        &mut trainer,
        config,
        &loaded.train,
        &loaded.eval,
        &run,
        &options,
    )?;
    let adapter_dir = run.path.join("adapter");
    save_adapter(&adapter_dir, &loaded.lora, &outcome.params)?;
    let (method, backend) = (trainer.method(), trainer.backend());
    // The model and its packed bases are done with: merge and export stream the checkpoint
    // tensor by tensor, so the command's peak stays the training phase's.
    drop(trainer);
    release_freed_memory();
    let exported = if quants.is_empty() {
        None
    } else {
        Some(export(request, &quants, &run.path, &loaded.tokenizer)?)
    };
    let mut artifacts: Vec<String> = vec!["adapter".into()];
    if let Some(e) = &exported {
        artifacts.extend(
            e.ggufs
                .iter()
                .filter_map(|g| g.file_name())
                .map(|n| n.to_string_lossy().into_owned()),
        );
        artifacts.push("Modelfile".into());
    }
    let refs: Vec<&str> = artifacts.iter().map(String::as_str).collect();
    let summary = tb_train::session::summarize(
        method,
        &backend,
        config,
        &run,
        &outcome,
        loaded.data,
        started,
        &refs,
    )?;
    run.write_summary(&summary)?;
    let (ggufs, modelfile, export_s) = match exported {
        Some(e) => (e.ggufs, Some(e.modelfile), Some(e.seconds)),
        None => (Vec::new(), None, None),
    };
    Ok(TrainOutcome {
        run: run.path.clone(),
        adapter: adapter_dir,
        summary,
        ggufs,
        modelfile,
        export_s,
    })
}

/// What `--gguf` wrote after training.
struct Exported {
    ggufs: Vec<PathBuf>,
    modelfile: PathBuf,
    seconds: f64,
}

/// Merges the run's adapter into the unquantised base, writes one GGUF per mix and the
/// Modelfile, and records the step in `serving.json`.
fn export(
    request: &TrainRequest,
    quants: &[QuantMix],
    run: &Path,
    tokenizer: &TextTokenizer,
) -> tb_train::Result<Exported> {
    let started = Instant::now();
    let config = &request.config;
    let adapter = Adapter::load(run.join("adapter"))?;
    let merged = run.join("merged");
    if merged.exists() {
        // Left by this run before it was interrupted (a resumed run merges again).
        std::fs::remove_dir_all(&merged).map_err(|source| tb_train::Error::Io {
            path: merged.clone(),
            source,
        })?;
    }
    // Always the original weights from the model folder, never the packed 4-bit copies.
    let report = tb_train::merge_adapter(&config.model.base, &adapter, &merged)?;
    tracing::info!(projections = report.merged_tensors, dtype = %report.dtype, "merged into the unquantised base");
    let mut ggufs = Vec::new();
    let mut listed = Vec::new();
    for mix in quants {
        let file = format!("{}-{}.gguf", config.name, mix.name());
        let out = run.join(&file);
        let r = tb_model::gguf_export::export_hf_dir(
            &merged,
            &out,
            ExportOptions {
                mix: *mix,
                threads: 0,
            },
        )
        .map_err(|source| tb_train::Error::Export {
            path: out.clone(),
            source: Box::new(source),
        })?;
        tracing::info!(file = %out.display(), bytes = r.bytes_out, "GGUF written");
        listed.push((file, r.bytes_out));
        ggufs.push(out);
    }
    let chat = OllamaTemplate::for_tokenizer(tokenizer);
    if chat.template.is_none() {
        tracing::warn!("chat template not recognised (ChatML or Llama 3): the Modelfile has no TEMPLATE; Ollama will autodetect one from the GGUF");
    }
    // The Modelfile's FROM is the first GGUF asked for (export runs only with GGUF types).
    let first = &listed[0].0;
    let modelfile_path = run.join("Modelfile");
    tb_gguf::fsio::write_atomic(
        &modelfile_path,
        modelfile(first, &chat, config.eval.num_ctx).as_bytes(),
    )
    .map_err(tb_train::Error::from)?;
    let seconds = started.elapsed().as_secs_f64();
    tb_train::serving::record_step(
        run,
        ServingStep {
            command: format!(
                "tunebench train unsloth --gguf {} (merge, GGUFs and Modelfile)",
                request.gguf.join(",")
            ),
            seconds,
            ggufs: listed,
            modelfile: true,
        },
    )?;
    Ok(Exported {
        ggufs,
        modelfile: modelfile_path,
        seconds,
    })
}

/// Hands the heap pages freed by dropping the dense bases (or the whole model) back to the OS. glibc keeps freed
/// chunks of that size in its arenas (its mmap threshold grows as large blocks are freed), so
/// without this the process's resident memory would keep the dense weights' footprint and the
/// 4-bit base would not show in RSS; later activations would just reuse those pages.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` only returns unused heap memory to the kernel; it takes no
        // pointers and is safe to call at any time from any thread.
        let released = unsafe { libc::malloc_trim(0) };
        tracing::debug!(released, "malloc_trim");
    }
}
