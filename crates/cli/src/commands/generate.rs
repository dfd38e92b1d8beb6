//! `tunebench generate --model DIR|FILE.gguf --prompt TEXT`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use tb_model::{generate, ChatMessage, CpuBackend, GenerationConfig, LoadedModel, Sampling};

/// Arguments of `generate`.
#[derive(Args)]
pub struct GenerateArgs {
    /// HF model directory or GGUF file.
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt as a user turn with the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Optional system message (with --chat).
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Most new tokens.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Sample with this seed (temperature/top-p) instead of greedy decoding.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Sampling temperature (with --seed).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Nucleus sampling mass (with --seed).
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
}

/// Output of a generation, for reuse by the demo.
pub struct GeneratedText {
    /// The text.
    pub text: String,
    /// New tokens.
    pub tokens: usize,
    /// Decode tokens per second (first token included).
    pub tokens_per_second: f64,
}

/// Generates and streams the text to stdout.
pub fn run_generate(args: GenerateArgs) -> Result<()> {
    let out = generate_text(&args, true)?;
    tracing::info!(
        tokens = out.tokens,
        chars = out.text.chars().count(),
        tokens_per_second = format!("{:.1}", out.tokens_per_second),
        "done"
    );
    Ok(())
}

/// Loads the model and generates; `stream` prints tokens as they come.
pub fn generate_text(args: &GenerateArgs, stream: bool) -> Result<GeneratedText> {
    let device = Default::default();
    let loaded = LoadedModel::<CpuBackend>::load(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let tok = &loaded.tokenizer;
    let prompt = if args.chat {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(ChatMessage::new("system", s.clone()));
        }
        messages.push(ChatMessage::new("user", args.prompt.clone()));
        tok.encode_chat(&messages, true)?
    } else {
        tok.encode(&args.prompt, true)?
    };
    let sampling = match args.seed {
        None => Sampling::Greedy,
        Some(seed) => Sampling::TopP {
            temperature: args.temperature,
            top_p: args.top_p,
            seed,
        },
    };
    let config = GenerationConfig {
        max_new_tokens: args.max_tokens,
        sampling,
        stop_ids: tok.stop_ids().to_vec(),
    };
    let start = Instant::now();
    let mut so_far: Vec<u32> = Vec::new();
    let mut printed = 0usize;
    let mut stdout = std::io::stdout().lock();
    let generation = generate(&loaded.model, &prompt, &config, &device, |t| {
        if !stream {
            return;
        }
        so_far.push(t);
        if let Ok(text) = tok.decode(&so_far, true) {
            // Print only complete UTF-8 text (a multi-byte letter may span tokens).
            if !text.ends_with('\u{FFFD}') && text.len() >= printed {
                let _ = write!(stdout, "{}", &text[printed..]);
                let _ = stdout.flush();
                printed = text.len();
            }
        }
    })?;
    let secs = start.elapsed().as_secs_f64();
    let text = tok.decode(&generation.tokens, true)?;
    if stream {
        if text.len() > printed {
            let _ = write!(stdout, "{}", &text[printed.min(text.len())..]);
        }
        let _ = writeln!(stdout);
    }
    Ok(GeneratedText {
        tokens: generation.tokens.len(),
        tokens_per_second: generation.tokens.len() as f64 / secs.max(1e-9),
        text,
    })
}
