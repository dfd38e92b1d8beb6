//! `tunebench make-model`: a Mistral-architecture HF folder with seeded random weights, for speed
//! and memory checks at full width without the real checkpoint (e.g. Turkcell-7B's shape with a
//! few layers on a GPU machine that cannot download it).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tb_model::checkpoint_writer::{write_safetensors_streamed, TensorHeader};
use tb_model::StoredDtype;

/// Shapes to start from.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Preset {
    /// TURKCELL/Turkcell-LLM-7b-v1 (Mistral 7B width, 48 353-token vocabulary), 32 layers.
    Turkcell7b,
    /// A tiny Mistral (hidden 64, 2 layers) for the tokenizer fixture's 320 ids.
    Tiny,
}

/// Arguments of `make-model`.
#[derive(Args)]
pub struct MakeModelArgs {
    /// Starting shape; the flags below override single fields.
    #[arg(long, value_enum, default_value = "tiny")]
    preset: Preset,
    /// Decoder layers.
    #[arg(long)]
    layers: Option<usize>,
    /// Hidden size.
    #[arg(long)]
    hidden: Option<usize>,
    /// MLP intermediate size.
    #[arg(long)]
    intermediate: Option<usize>,
    /// Vocabulary size (must cover every id of the tokenizer).
    #[arg(long)]
    vocab: Option<usize>,
    /// Folder holding `tokenizer.json` and `tokenizer_config.json` (copied).
    #[arg(long)]
    tokenizer: PathBuf,
    /// Stored dtype of the weights.
    #[arg(long, value_parser = ["bf16", "f32"], default_value = "bf16")]
    dtype: String,
    /// Seed of the weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (must not exist).
    #[arg(long)]
    out: PathBuf,
}

struct Shape {
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    vocab: usize,
    window: usize,
    max_pos: usize,
}

/// Runs `make-model`.
pub fn run_make_model(args: MakeModelArgs) -> Result<()> {
    let mut s = match args.preset {
        Preset::Turkcell7b => Shape {
            hidden: 4096,
            intermediate: 14336,
            layers: 32,
            heads: 32,
            kv_heads: 8,
            vocab: 48353,
            window: 4096,
            max_pos: 32768,
        },
        Preset::Tiny => Shape {
            hidden: 64,
            intermediate: 128,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            vocab: 320,
            window: 4096,
            max_pos: 2048,
        },
    };
    s.layers = args.layers.unwrap_or(s.layers);
    s.hidden = args.hidden.unwrap_or(s.hidden);
    s.intermediate = args.intermediate.unwrap_or(s.intermediate);
    s.vocab = args.vocab.unwrap_or(s.vocab);
    if s.hidden % s.heads != 0 || s.layers == 0 || s.vocab == 0 {
        bail!(
            "shape: hidden {} must divide into {} heads, layers and vocab must be positive",
            s.hidden,
            s.heads
        );
    }
    let ids = tokenizer_ids(&args.tokenizer)?;
    if ids > s.vocab {
        bail!(
            "{}: the tokenizer has ids up to {} but --vocab is {}",
            args.tokenizer.display(),
            ids - 1,
            s.vocab
        );
    }
    if args.out.exists() {
        bail!("{} already exists", args.out.display());
    }
    let tmp = args.out.with_extension("partial");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    write_model(&s, &args, &tmp)?;
    fs::rename(&tmp, &args.out).with_context(|| format!("renaming to {}", args.out.display()))?;
    let params = param_count(&s);
    println!(
        "{} parameters ({} layers, hidden {}, vocab {}, {}) -> {}",
        params,
        s.layers,
        s.hidden,
        s.vocab,
        args.dtype,
        args.out.display()
    );
    Ok(())
}

/// One more than the largest token id of `dir/tokenizer.json`.
fn tokenizer_ids(dir: &Path) -> Result<usize> {
    let path = dir.join("tokenizer.json");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let vocab = v["model"]["vocab"]
        .as_object()
        .map(|m| m.values().filter_map(|x| x.as_u64()).max().unwrap_or(0))
        .with_context(|| format!("{}: no model.vocab object", path.display()))?;
    let added = v["added_tokens"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["id"].as_u64()).max().unwrap_or(0))
        .unwrap_or(0);
    Ok(vocab.max(added) as usize + 1)
}

/// `(name, shape)` of every tensor, HF names.
fn tensors(s: &Shape) -> Vec<(String, Vec<usize>)> {
    let (h, i, hd) = (s.hidden, s.intermediate, s.hidden / s.heads);
    let kv = s.kv_heads * hd;
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![s.vocab, h])];
    for l in 0..s.layers {
        let p = format!("model.layers.{l}");
        for (n, shape) in [
            ("input_layernorm", vec![h]),
            ("post_attention_layernorm", vec![h]),
            ("self_attn.q_proj", vec![h, h]),
            ("self_attn.k_proj", vec![kv, h]),
            ("self_attn.v_proj", vec![kv, h]),
            ("self_attn.o_proj", vec![h, h]),
            ("mlp.gate_proj", vec![i, h]),
            ("mlp.up_proj", vec![i, h]),
            ("mlp.down_proj", vec![h, i]),
        ] {
            out.push((format!("{p}.{n}.weight"), shape));
        }
    }
    out.push(("model.norm.weight".into(), vec![h]));
    out.push(("lm_head.weight".into(), vec![s.vocab, h]));
    out
}

fn param_count(s: &Shape) -> usize {
    tensors(s)
        .iter()
        .map(|(_, sh)| sh.iter().product::<usize>())
        .sum()
}

fn write_model(s: &Shape, args: &MakeModelArgs, dir: &Path) -> Result<()> {
    let bf16 = args.dtype == "bf16";
    let config = json!({
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "hidden_size": s.hidden,
        "intermediate_size": s.intermediate,
        "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads,
        "head_dim": s.hidden / s.heads,
        "vocab_size": s.vocab,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": s.max_pos,
        "sliding_window": s.window,
        "tie_word_embeddings": false,
        "hidden_act": "silu",
        "torch_dtype": if bf16 { "bfloat16" } else { "float32" },
        "bos_token_id": 1,
        "eos_token_id": 2,
    });
    fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        fs::copy(args.tokenizer.join(f), dir.join(f))
            .with_context(|| format!("copying {}", args.tokenizer.join(f).display()))?;
    }
    // Uniform in ±a has the standard deviation 0.02 of HF's initializer.
    let a = 0.02f32 * 3f32.sqrt();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let dtype = if bf16 {
        StoredDtype::BF16
    } else {
        StoredDtype::F32
    };
    let headers: Vec<TensorHeader> = tensors(s)
        .into_iter()
        .map(|(name, shape)| TensorHeader { name, dtype, shape })
        .collect();
    let path = dir.join("model.safetensors");
    // One tensor in memory at a time: a 7B model is written in the memory of its embedding.
    write_safetensors_streamed(&path, &headers, |_, t| {
        let n: usize = t.shape.iter().product();
        let norm = t.name.ends_with("norm.weight");
        let mut b = Vec::with_capacity(t.byte_len());
        for _ in 0..n {
            let v: f32 = if norm { 1.0 } else { rng.random_range(-a..a) };
            if bf16 {
                b.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes());
            } else {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        Ok::<_, anyhow::Error>(b)
    })
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
