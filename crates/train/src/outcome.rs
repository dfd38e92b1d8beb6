//! What a trainer is asked ([`TrainRequest`]) and what it hands back ([`TrainOutcome`]): one
//! pair for both methods, so callers (the CLI, `demo`, `bench`) treat them alike. A parent
//! process reads a child's outcome from `tunebench train ... --json`, never from its log lines.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::run_dir::RunSummary;

/// A training to run.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The experiment (already validated by whoever loaded it).
    pub config: ExperimentConfig,
    /// Continue this run folder from its newest usable checkpoint instead of starting a new run.
    pub resume: Option<PathBuf>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// GGUF types to write after training (`q4_k_m`, `q8_0`, ...; empty: the adapter only).
    /// Only the Unsloth-style trainer merges and exports in the same command; the PEFT-style
    /// one refuses a non-empty list (PEFT users merge and convert separately).
    pub gguf: Vec<String>,
}

/// What a training produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    /// The run folder (`runs/<utc>-<method>/`).
    pub run: PathBuf,
    /// The PEFT-format adapter folder inside it.
    pub adapter: PathBuf,
    /// The run's `summary.json`.
    pub summary: RunSummary,
    /// GGUF files written after training, in the order asked for.
    pub ggufs: Vec<PathBuf>,
    /// The Ollama Modelfile, when GGUFs were written.
    pub modelfile: Option<PathBuf>,
    /// Seconds from the end of training to the last GGUF and the Modelfile, when any.
    pub export_s: Option<f64>,
}

impl TrainOutcome {
    /// Reads the outcome a `tunebench train ... --json` child printed: the last non-empty line
    /// of its stdout.
    ///
    /// # Errors
    /// A message saying what the child printed instead.
    pub fn from_child_stdout(stdout: &str) -> Result<Self, String> {
        let line = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .ok_or_else(|| "the trainer printed no outcome".to_string())?;
        serde_json::from_str(line)
            .map_err(|e| format!("the trainer's outcome line is not a TrainOutcome ({e}): {line}"))
    }
}

/// Runs `$train::<B>($request, device, backend_name)` on the backend `[train] device` names:
/// `tb_model::CpuBackend` under autodiff on the CPU, Burn's wgpu or CUDA backend where the
/// calling crate's `wgpu`/`cuda` feature is on. `$suffix` is appended to the backend's name
/// (`"+fused"` gives `flex+fused`). A device the build lacks is [`crate::DeviceKind::not_built`].
#[macro_export]
macro_rules! on_device {
    ($request:expr, $train:ident, $suffix:literal) => {{
        let request = $request;
        match request.config.train.device {
            $crate::DeviceKind::Cpu => $train::<::burn::backend::Autodiff<::tb_model::CpuBackend>>(
                request,
                Default::default(),
                concat!("flex", $suffix),
            ),
            #[cfg(feature = "wgpu")]
            $crate::DeviceKind::Wgpu => $train::<::burn::backend::Autodiff<::burn::backend::Wgpu>>(
                request,
                ::burn::backend::wgpu::WgpuDevice::default(),
                concat!("wgpu", $suffix),
            ),
            #[cfg(feature = "cuda")]
            $crate::DeviceKind::Cuda => $train::<::burn::backend::Autodiff<::burn::backend::Cuda>>(
                request,
                ::burn::backend::cuda::CudaDevice::default(),
                concat!("cuda", $suffix),
            ),
            #[allow(
                unreachable_patterns,
                reason = "reachable in builds without a GPU feature"
            )]
            other => Err(other.not_built().into()),
        }
    }};
}
