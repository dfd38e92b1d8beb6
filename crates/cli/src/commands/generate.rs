//! `tunebench generate --model DIR|FILE.gguf --prompt TEXT`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use tb_eval::engine::{GenerateSettings, Session};
use tb_model::{
    generate, ChatMessage, CpuBackend, GenerationConfig, LoadedModel, Sampling, TextTokenizer,
};

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
///
/// A GGUF file runs on the embedded engine, which keeps its weights in the file's types
/// (a 7B Q4_K_M stays ~4 GB); an HF folder runs on the Burn model.
pub fn generate_text(args: &GenerateArgs, stream: bool) -> Result<GeneratedText> {
    let sampling = match args.seed {
        None => Sampling::Greedy,
        Some(seed) => Sampling::TopP {
            temperature: args.temperature,
            top_p: args.top_p,
            seed,
        },
    };
    let is_gguf = args.model.is_file()
        && args
            .model
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if is_gguf {
        let session = Session::open(&args.model)
            .with_context(|| format!("loading {}", args.model.display()))?;
        let tok = session.tokenizer();
        let prompt = prompt_ids(args, tok)?;
        let settings = GenerateSettings {
            max_tokens: args.max_tokens,
            sampling,
            ..GenerateSettings::default()
        };
        let mut printer = Printer::new(tok, stream);
        let start = Instant::now();
        let completion = session.generate_streaming(&prompt, &settings, |t| printer.push(t))?;
        return Ok(printer.finish(completion.tokens.len(), completion.text, start));
    }
    let device = Default::default();
    let loaded = LoadedModel::<CpuBackend>::load(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let tok = loaded
        .tokenizer()
        .with_context(|| format!("reading the tokenizer of {}", args.model.display()))?;
    let prompt = prompt_ids(args, tok)?;
    let config = GenerationConfig {
        max_new_tokens: args.max_tokens,
        sampling,
        stop_ids: tok.stop_ids().to_vec(),
    };
    let mut printer = Printer::new(tok, stream);
    let start = Instant::now();
    let generation = generate(&loaded.model, &prompt, &config, &device, |t| {
        printer.push(t)
    })?;
    let text = tok.decode(&generation.tokens, true)?;
    Ok(printer.finish(generation.tokens.len(), text, start))
}

/// The prompt's token ids: plain text, or a user turn (and system message) in the chat template.
fn prompt_ids(args: &GenerateArgs, tok: &TextTokenizer) -> Result<Vec<u32>> {
    Ok(if args.chat {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(ChatMessage::new("system", s.clone()));
        }
        messages.push(ChatMessage::new("user", args.prompt.clone()));
        tok.encode_chat(&messages, true)?
    } else {
        tok.encode(&args.prompt, true)?
    })
}

/// Prints generated text to stdout as tokens arrive (when streaming).
struct Printer<'a> {
    tok: &'a TextTokenizer,
    stream: bool,
    so_far: Vec<u32>,
    printed: usize,
}

impl<'a> Printer<'a> {
    fn new(tok: &'a TextTokenizer, stream: bool) -> Self {
        Self {
            tok,
            stream,
            so_far: Vec::new(),
            printed: 0,
        }
    }

    fn push(&mut self, token: u32) {
        if !self.stream {
            return;
        }
        self.so_far.push(token);
        if let Ok(text) = self.tok.decode(&self.so_far, true) {
            // Print only complete UTF-8 text (a multi-byte letter may span tokens).
            if !text.ends_with('\u{FFFD}') && text.len() >= self.printed {
                let mut stdout = std::io::stdout().lock();
                let _ = write!(stdout, "{}", &text[self.printed..]);
                let _ = stdout.flush();
                self.printed = text.len();
            }
        }
    }

    /// Prints what is left of `text` (when streaming) and measures the generation that began
    /// at `start` and produced `tokens` tokens.
    fn finish(&self, tokens: usize, text: String, start: Instant) -> GeneratedText {
        let secs = start.elapsed().as_secs_f64();
        if self.stream {
            let mut stdout = std::io::stdout().lock();
            if text.len() > self.printed {
                let _ = write!(stdout, "{}", &text[self.printed..]);
            }
            let _ = writeln!(stdout);
        }
        GeneratedText {
            tokens,
            tokens_per_second: tokens as f64 / secs.max(1e-9),
            text,
        }
    }
}
