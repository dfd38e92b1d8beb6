//! Reading an HF Llama/Mistral directory without torch: `config.json` and safetensors weights
//! (single file or sharded with `model.safetensors.index.json`; F32, F16 or BF16).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::Value as Json;

use crate::error::{Error, Result};

/// HF architectures that map to llama.cpp's `llama` architecture.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["LlamaForCausalLM", "MistralForCausalLM"];

/// Reads and parses a JSON file.
pub(crate) fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::convert(path, format!("invalid JSON: {e}")))
}

/// Reads a JSON file if it exists.
pub(crate) fn read_json_opt(path: &Path) -> Result<Option<Json>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// RoPE scaling understood by the exporter.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// No scaling (`rope_type` "default" or absent).
    None,
    /// Linear position interpolation by `factor`.
    Linear(f32),
    /// Llama 3.1+ frequency-dependent scaling, written as the `rope_freqs.weight` tensor.
    Llama3 {
        /// `factor`.
        factor: f32,
        /// `low_freq_factor`.
        low_freq_factor: f32,
        /// `high_freq_factor`.
        high_freq_factor: f32,
        /// `original_max_position_embeddings`.
        original_context: f32,
    },
}

impl RopeScaling {
    /// The `rope_freqs` factors (one per rotated pair, `head_dim / 2` of them) for llama3
    /// scaling, as `convert_hf_to_gguf.py LlamaModel.generate_extra_tensors` computes them.
    pub fn llama3_factors(&self, theta: f32, head_dim: u32) -> Option<Vec<f32>> {
        let RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context,
        } = *self
        else {
            return None;
        };
        let low_wavelen = original_context / low_freq_factor;
        let high_wavelen = original_context / high_freq_factor;
        let dim = head_dim as f32;
        Some(
            (0..head_dim / 2)
                .map(|i| {
                    let freq = 1.0 / theta.powf((2 * i) as f32 / dim);
                    let wavelen = 2.0 * std::f32::consts::PI / freq;
                    if wavelen < high_wavelen {
                        1.0
                    } else if wavelen > low_wavelen {
                        factor
                    } else {
                        let smooth = (original_context / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        1.0 / ((1.0 - smooth) / factor + smooth)
                    }
                })
                .collect(),
        )
    }
}

/// The `config.json` facts the llama GGUF keys are made from.
#[derive(Debug, Clone, PartialEq)]
pub struct HfLlamaConfig {
    /// `architectures[0]`.
    pub architecture: String,
    /// `hidden_size`.
    pub n_embd: u32,
    /// `intermediate_size`.
    pub n_ff: u32,
    /// `num_hidden_layers`.
    pub n_layer: u32,
    /// `num_attention_heads`.
    pub n_head: u32,
    /// `num_key_value_heads` (defaults to `n_head`).
    pub n_head_kv: u32,
    /// `head_dim` (defaults to `n_embd / n_head`).
    pub head_dim: u32,
    /// Whether `head_dim` was given explicitly.
    pub explicit_head_dim: bool,
    /// `max_position_embeddings`.
    pub n_ctx: u32,
    /// `rms_norm_eps`.
    pub rms_eps: f32,
    /// `rope_theta` (top level or in `rope_parameters`/`rope_scaling`; default 10000).
    pub rope_theta: f32,
    /// RoPE scaling.
    pub rope_scaling: RopeScaling,
    /// `vocab_size`.
    pub vocab_size: u32,
    /// `tie_word_embeddings` (default false).
    pub tied_embeddings: bool,
    /// `sliding_window`, if set (llama.cpp's `llama` architecture ignores it).
    pub sliding_window: Option<u32>,
    /// `bos_token_id` / `eos_token_id` / `pad_token_id` / `unk_token_id` as given.
    pub token_ids: BTreeMap<String, u32>,
}

impl HfLlamaConfig {
    /// Parses `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Err(Error::convert(
                dir,
                "not an HF model directory: config.json is missing",
            ));
        }
        Self::from_json(&read_json(&path)?, &path)
    }

    /// Parses a `config.json` document (`path` is used in messages).
    pub fn from_json(j: &Json, path: &Path) -> Result<Self> {
        let err = |m: String| Error::convert(path, m);
        let architecture = j
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Json::as_str)
            .map(str::to_owned)
            .or_else(|| match j.get("model_type").and_then(Json::as_str) {
                Some("llama") => Some("LlamaForCausalLM".to_owned()),
                Some("mistral") => Some("MistralForCausalLM".to_owned()),
                _ => None,
            })
            .ok_or_else(|| err("no `architectures` or known `model_type`".into()))?;
        if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
            return Err(err(format!(
                "unsupported architecture `{architecture}` (supported: {})",
                SUPPORTED_ARCHITECTURES.join(", ")
            )));
        }
        let uint = |key: &str| -> Result<Option<u32>> {
            match j.get(key) {
                None | Some(Json::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .map(Some)
                    .ok_or_else(|| err(format!("`{key}` must be a non-negative integer, got {v}"))),
            }
        };
        let req = |key: &str| -> Result<u32> {
            uint(key)?.ok_or_else(|| err(format!("`{key}` is missing")))
        };
        let n_embd = req("hidden_size")?;
        let n_head = req("num_attention_heads")?;
        if n_head == 0 || n_embd == 0 {
            return Err(err(
                "`hidden_size` and `num_attention_heads` must be > 0".into()
            ));
        }
        let n_head_kv = uint("num_key_value_heads")?.unwrap_or(n_head);
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(err(format!(
                "`num_key_value_heads` {n_head_kv} does not divide `num_attention_heads` {n_head}"
            )));
        }
        let explicit = uint("head_dim")?;
        let head_dim = explicit.unwrap_or(n_embd / n_head);
        let rope = j
            .get("rope_parameters")
            .or_else(|| j.get("rope_scaling"))
            .filter(|v| v.is_object());
        let rope_theta = j
            .get("rope_theta")
            .or_else(|| rope.and_then(|r| r.get("rope_theta")))
            .and_then(Json::as_f64)
            .unwrap_or(10000.0) as f32;
        let rope_type = rope
            .and_then(|r| r.get("rope_type").or_else(|| r.get("type")))
            .and_then(Json::as_str)
            .unwrap_or("default");
        let rope_scaling = match rope_type {
            "default" => RopeScaling::None,
            "linear" => {
                let f = rope
                    .and_then(|r| r.get("factor"))
                    .and_then(Json::as_f64)
                    .ok_or_else(|| err("linear rope scaling without `factor`".into()))?;
                RopeScaling::Linear(f as f32)
            }
            "llama3" => {
                let get = |k: &str, d: f64| {
                    rope.and_then(|r| r.get(k))
                        .and_then(Json::as_f64)
                        .unwrap_or(d) as f32
                };
                RopeScaling::Llama3 {
                    factor: get("factor", 8.0),
                    low_freq_factor: get("low_freq_factor", 1.0),
                    high_freq_factor: get("high_freq_factor", 4.0),
                    original_context: get("original_max_position_embeddings", 8192.0),
                }
            }
            other => {
                return Err(err(format!(
                    "unsupported rope_type `{other}` (supported: default, linear, llama3)"
                )))
            }
        };
        let mut token_ids = BTreeMap::new();
        for k in ["bos", "eos", "pad", "unk"] {
            let key = format!("{k}_token_id");
            // eos_token_id may be a list; the first entry is the EOS
            let v = match j.get(&key) {
                Some(Json::Array(a)) => a.first().and_then(Json::as_u64),
                Some(v) => v.as_u64(),
                None => None,
            };
            if let Some(id) = v.and_then(|x| u32::try_from(x).ok()) {
                token_ids.insert(k.to_owned(), id);
            }
        }
        Ok(HfLlamaConfig {
            architecture,
            n_embd,
            n_ff: req("intermediate_size")?,
            n_layer: req("num_hidden_layers")?,
            n_head,
            n_head_kv,
            head_dim,
            explicit_head_dim: explicit.is_some(),
            n_ctx: uint("max_position_embeddings")?.unwrap_or(4096),
            rms_eps: j
                .get("rms_norm_eps")
                .and_then(Json::as_f64)
                .ok_or_else(|| err("`rms_norm_eps` is missing".into()))?
                as f32,
            rope_theta,
            rope_scaling,
            vocab_size: req("vocab_size")?,
            tied_embeddings: j
                .get("tie_word_embeddings")
                .and_then(Json::as_bool)
                .unwrap_or(false),
            sliding_window: uint("sliding_window")?,
            token_ids,
        })
    }

    /// The HF shape `[rows, cols]` (or `[n]`) each tensor of this model must have.
    pub fn expected_shape(&self, hf_name: &str) -> Option<Vec<usize>> {
        let e = self.n_embd as usize;
        let q = (self.n_head * self.head_dim) as usize;
        let kv = (self.n_head_kv * self.head_dim) as usize;
        let ff = self.n_ff as usize;
        let v = self.vocab_size as usize;
        match hf_name {
            "model.embed_tokens.weight" | "lm_head.weight" => return Some(vec![v, e]),
            "model.norm.weight" => return Some(vec![e]),
            _ => {}
        }
        let rest = hf_name.strip_prefix("model.layers.")?;
        let (layer, module) = rest.split_once('.')?;
        let layer: u32 = layer.parse().ok()?;
        if layer >= self.n_layer {
            return None;
        }
        Some(match module {
            "input_layernorm.weight" | "post_attention_layernorm.weight" => vec![e],
            "self_attn.q_proj.weight" => vec![q, e],
            "self_attn.k_proj.weight" | "self_attn.v_proj.weight" => vec![kv, e],
            "self_attn.o_proj.weight" => vec![e, q],
            "self_attn.q_proj.bias" => vec![q],
            "self_attn.k_proj.bias" | "self_attn.v_proj.bias" => vec![kv],
            "self_attn.o_proj.bias" | "mlp.down_proj.bias" => vec![e],
            "mlp.gate_proj.weight" | "mlp.up_proj.weight" => vec![ff, e],
            "mlp.down_proj.weight" => vec![e, ff],
            "mlp.gate_proj.bias" | "mlp.up_proj.bias" => vec![ff],
            _ => return None,
        })
    }

    /// HF names of the tensors every model of this config must have.
    pub fn required_tensors(&self) -> Vec<String> {
        let mut v = vec![
            "model.embed_tokens.weight".to_owned(),
            "model.norm.weight".to_owned(),
        ];
        if !self.tied_embeddings {
            v.push("lm_head.weight".to_owned());
        }
        for i in 0..self.n_layer {
            for m in [
                "input_layernorm",
                "self_attn.q_proj",
                "self_attn.k_proj",
                "self_attn.v_proj",
                "self_attn.o_proj",
                "post_attention_layernorm",
                "mlp.gate_proj",
                "mlp.up_proj",
                "mlp.down_proj",
            ] {
                v.push(format!("model.layers.{i}.{m}.weight"));
            }
        }
        v
    }
}

/// Where one tensor lives.
#[derive(Debug, Clone)]
pub struct StoredTensor {
    /// Index of the file in the `files` of [`SafetensorsDir`].
    pub file: usize,
    /// Stored dtype.
    pub dtype: Dtype,
    /// Shape (PyTorch order).
    pub shape: Vec<usize>,
    /// Byte range of the data from the start of the file.
    pub bytes: std::ops::Range<u64>,
}

/// The safetensors files of a directory; tensors are read and decoded one at a time.
pub struct SafetensorsDir {
    files: Vec<(PathBuf, std::fs::File)>,
    tensors: BTreeMap<String, StoredTensor>,
}

impl SafetensorsDir {
    /// Opens `model.safetensors.index.json` (all shards it names) or `model.safetensors`.
    pub fn open(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let names: Vec<String> = if let Some(j) = read_json_opt(&index)? {
            let map = j
                .get("weight_map")
                .and_then(Json::as_object)
                .ok_or_else(|| Error::convert(&index, "no `weight_map` object"))?;
            let set: BTreeSet<String> = map
                .values()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            set.into_iter().collect()
        } else if dir.join("model.safetensors").is_file() {
            vec!["model.safetensors".to_owned()]
        } else {
            return Err(Error::convert(
                dir,
                "no model.safetensors or model.safetensors.index.json",
            ));
        };
        Self::open_files(&names.iter().map(|n| dir.join(n)).collect::<Vec<_>>())
    }

    /// Opens the given safetensors files.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        let mut tensors = BTreeMap::new();
        for (i, path) in paths.iter().enumerate() {
            let f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
            // SAFETY: the file is opened read-only and not modified while mapped (the usual
            // caveat of memory-mapping files that another process could truncate). Only the
            // header is read through the map; tensor data is read with positioned reads so a
            // pass over a large checkpoint does not leave its pages resident in this process.
            let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io("mmap", path, e))?;
            let (header_len, metadata) = SafeTensors::read_metadata(&map)
                .map_err(|e| Error::convert(path, format!("invalid safetensors: {e}")))?;
            let data_start = 8 + header_len as u64;
            for (name, info) in metadata.tensors() {
                let (start, end) = info.data_offsets;
                let t = StoredTensor {
                    file: i,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    bytes: data_start + start as u64..data_start + end as u64,
                };
                if tensors.insert(name.clone(), t).is_some() {
                    return Err(Error::convert(
                        path,
                        format!("tensor `{name}` is stored twice"),
                    ));
                }
            }
            files.push((path.clone(), f));
        }
        Ok(SafetensorsDir { files, tensors })
    }

    /// All tensors, by name.
    pub fn tensors(&self) -> &BTreeMap<String, StoredTensor> {
        &self.tensors
    }

    /// The file a tensor is in.
    pub fn path_of(&self, t: &StoredTensor) -> &Path {
        &self.files[t.file].0
    }

    /// Decodes a tensor to f32 (F32, F16 and BF16 are accepted).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::TensorNotFound(name.to_owned()))?;
        let (path, file) = &self.files[t.file];
        let mut b = vec![0u8; (t.bytes.end - t.bytes.start) as usize];
        read_at(file, &mut b, t.bytes.start).map_err(|e| Error::io("read", path, e))?;
        let out = match t.dtype {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::convert(
                    path,
                    format!("tensor `{name}` has dtype {other:?} (supported: F32, F16, BF16)"),
                ))
            }
        };
        Ok(out)
    }
}

/// Fills `buf` from `file` at `offset` without moving a shared cursor.
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}
