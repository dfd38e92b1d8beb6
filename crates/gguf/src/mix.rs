//! llama-quantize's per-tensor type selection (ggml-org/llama.cpp `src/llama-quant.cpp`).
//!
//! For a target mix ([`QuantMix`]) and the model's facts ([`ModelFacts`]), [`plan_tensor_types`]
//! decides each tensor's type the way `llama_tensor_get_type` does without an importance
//! matrix and without overrides:
//!
//! * only tensors that [`tensor_allows_quantization`] change type (≥ 2-D, name ends in
//!   `weight`, not a `_norm`, not `ffn_gate_inp`, ...); the rest keep their source type;
//! * `output.weight` (and `token_embd.weight` when there is no `output.weight`, i.e. tied
//!   embeddings) → Q6_K unless the mix is Q8_0; Q8_0 if its rows don't fit the default type's
//!   block (or for Falcon);
//! * Q4_K_M: `attn_v` and `ffn_down` → Q6_K on the [`use_more_bits`] layers; fused `attn_qkv` →
//!   Q5_K; 70B GQA llama `attn_v` → Q5_K; 8-expert models bump `attn_v`/`attn_k` to Q8_0 and
//!   `attn_output` to Q5_K; Falcon's `ffn_down` ladder;
//! * then the shape fallback ([`tensor_type_fallback`]): a row length that is not a multiple of
//!   the chosen type's block turns Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, and F16 if even that
//!   does not fit.
//!
//! Tensors must be visited in llama.cpp's order ([`llama_tensor_order`]): `attn_v` and
//! `ffn_down` are numbered by counters, exactly as upstream.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::types::{GgmlType, LlamaFileType};

/// A llama-quantize target ("ftype").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[expect(non_camel_case_types, reason = "ggml's own type names (Q4_K, ...)")]
pub enum QuantMix {
    /// `Q4_K_M` (ftype 15): Q4_K with Q6_K for output and half of attn_v/ffn_down.
    Q4_K_M,
    /// `Q4_0` (ftype 2): Q4_0, output Q6_K.
    Q4_0,
    /// `Q8_0` (ftype 7).
    Q8_0,
    /// `F16` (ftype 1).
    F16,
    /// `BF16` (ftype 32).
    BF16,
    /// `F32` (ftype 0).
    F32,
}

impl QuantMix {
    /// All mixes.
    pub const ALL: [QuantMix; 6] = [
        QuantMix::Q4_K_M,
        QuantMix::Q4_0,
        QuantMix::Q8_0,
        QuantMix::F16,
        QuantMix::BF16,
        QuantMix::F32,
    ];

    /// The `general.file_type` value.
    pub fn file_type(self) -> LlamaFileType {
        match self {
            QuantMix::Q4_K_M => LlamaFileType::MostlyQ4_K_M,
            QuantMix::Q4_0 => LlamaFileType::MostlyQ4_0,
            QuantMix::Q8_0 => LlamaFileType::MostlyQ8_0,
            QuantMix::F16 => LlamaFileType::MostlyF16,
            QuantMix::BF16 => LlamaFileType::MostlyBF16,
            QuantMix::F32 => LlamaFileType::AllF32,
        }
    }

    /// `llama_ftype_get_default_type`.
    pub fn default_type(self) -> GgmlType {
        match self {
            QuantMix::Q4_K_M => GgmlType::Q4_K,
            QuantMix::Q4_0 => GgmlType::Q4_0,
            QuantMix::Q8_0 => GgmlType::Q8_0,
            QuantMix::F16 => GgmlType::F16,
            QuantMix::BF16 => GgmlType::BF16,
            QuantMix::F32 => GgmlType::F32,
        }
    }

    /// The name llama-quantize and Ollama use ("Q4_K_M", "F16", ...).
    pub fn name(self) -> &'static str {
        match self {
            QuantMix::Q4_K_M => "Q4_K_M",
            QuantMix::Q4_0 => "Q4_0",
            QuantMix::Q8_0 => "Q8_0",
            QuantMix::F16 => "F16",
            QuantMix::BF16 => "BF16",
            QuantMix::F32 => "F32",
        }
    }
}

impl fmt::Display for QuantMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for QuantMix {
    type Err = Error;

    /// Case-insensitive; `Q4_K` is accepted as an alias of `Q4_K_M` (as Ollama does).
    fn from_str(s: &str) -> Result<Self> {
        let up = s.trim().to_ascii_uppercase();
        if up == "Q4_K" {
            return Ok(QuantMix::Q4_K_M);
        }
        QuantMix::ALL
            .iter()
            .copied()
            .find(|m| m.name() == up)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown quantization '{s}' (expected one of Q4_K_M, Q4_0, Q8_0, F16, BF16, F32)"
                ))
            })
    }
}

/// The model facts the type rules look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFacts {
    /// `general.architecture` ("llama" for Llama and Mistral).
    pub arch: String,
    /// `{arch}.block_count`.
    pub n_layer: u32,
    /// `{arch}.attention.head_count`.
    pub n_head: u32,
    /// `{arch}.attention.head_count_kv` (defaults to `n_head`).
    pub n_head_kv: u32,
    /// `{arch}.expert_count` (0 for dense models).
    pub n_expert: u32,
}

impl ModelFacts {
    /// Reads the facts from GGUF metadata (integers of any width are accepted here; head
    /// counts may be per-layer arrays, of which the first entry is used).
    pub fn from_metadata(md: &Metadata) -> Result<Self> {
        let arch = md.get_str("general.architecture")?.to_string();
        let n_layer = u32_lenient(md, &format!("{arch}.block_count"))?;
        let key_head = format!("{arch}.attention.head_count");
        let n_head = match md.get_u32_or_array(&key_head) {
            Ok(v) => v.first().copied().unwrap_or(0),
            Err(Error::MissingKey(_)) => 0,
            Err(e) => return Err(e),
        };
        let key_kv = format!("{arch}.attention.head_count_kv");
        let n_head_kv = match md.get_u32_or_array(&key_kv) {
            Ok(v) => v.first().copied().unwrap_or(n_head),
            Err(Error::MissingKey(_)) => n_head,
            Err(e) => return Err(e),
        };
        let key_expert = format!("{arch}.expert_count");
        let n_expert = if md.contains_key(&key_expert) {
            u32_lenient(md, &key_expert)?
        } else {
            0
        };
        Ok(ModelFacts {
            arch,
            n_layer,
            n_head,
            n_head_kv,
            n_expert,
        })
    }

    fn is_falcon(&self) -> bool {
        self.arch == "falcon"
    }

    /// llama.cpp's `LLM_TYPE_70B` for the llama architecture: 80 layers with GQA, not MoE.
    fn is_llama_70b(&self) -> bool {
        self.arch == "llama"
            && self.n_expert != 8
            && self.n_layer == 80
            && self.n_head != self.n_head_kv
    }
}

fn u32_lenient(md: &Metadata, key: &str) -> Result<u32> {
    let v = md.get_u64_lenient(key)?;
    u32::try_from(v).map_err(|_| {
        Error::InvalidArgument(format!("metadata key '{key}' = {v} does not fit in u32"))
    })
}

/// `use_more_bits(i, n)`: the first and last eighth of the layers, and every third layer in
/// between (for n = 32: layers 0–3, 6, 9, …, 27 and 28–31).
pub fn use_more_bits(i_layer: i32, n_layers: i32) -> bool {
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

/// `tensor_allows_quantization` for llama-family models.
pub fn tensor_allows_quantization(name: &str, n_dims: usize) -> bool {
    if n_dims < 2 {
        return false;
    }
    let mut q = name.ends_with("weight");
    for pat in [
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    ] {
        q &= !name.contains(pat);
    }
    q &= name != "position_embd.weight" && name != "token_types.weight";
    q
}

/// llama.cpp's `weight_name_comparer`: tensors outside `blk.N.` first, then by layer N, then
/// by name (byte order).
pub fn llama_tensor_order(a: &str, b: &str) -> Ordering {
    let la = layer_of(a).map_or(-1, i64::from);
    let lb = layer_of(b).map_or(-1, i64::from);
    la.cmp(&lb).then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// The N of a `blk.N...` name, as `sscanf(name, "blk.%d.", &n)` reads it (an optional sign
/// and digits right after `blk.`; what follows the digits is not checked).
pub fn layer_of(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("blk.")?;
    let sign_len = usize::from(rest.starts_with(['+', '-']));
    let digits = rest[sign_len..]
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len() - sign_len);
    if digits == 0 {
        return None;
    }
    rest[..sign_len + digits].parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnQkv,
    AttnKvB,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

fn category(name: &str) -> Category {
    use Category::*;
    if name == "output.weight" {
        Output
    } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        TokenEmbd
    } else if name.contains("attn_qkv.weight") {
        AttnQkv
    } else if name.contains("attn_kv_b.weight") {
        AttnKvB
    } else if name.contains("attn_v.weight") {
        AttnV
    } else if name.contains("attn_k.weight") {
        AttnK
    } else if name.contains("attn_q.weight") {
        AttnQ
    } else if name.contains("attn_output.weight") {
        AttnOutput
    } else if name.contains("ffn_up") {
        FfnUp
    } else if name.contains("ffn_gate") {
        FfnGate
    } else if name.contains("ffn_down") {
        FfnDown
    } else {
        Other
    }
}

fn is_attn_v_like(c: Category) -> bool {
    matches!(c, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
}

/// `tensor_type_fallback`: a type whose block fits rows of `ne0` elements.
pub fn tensor_type_fallback(ne0: u64, target: GgmlType) -> Result<GgmlType> {
    let qk = target.block_size() as u64;
    if ne0.is_multiple_of(qk) {
        return Ok(target);
    }
    use GgmlType::*;
    let ret = match target {
        IQ1_S | IQ1_M | IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ4_XS => IQ4_NL,
        Q2_0 | Q2_K | Q3_K | TQ1_0 | TQ2_0 => Q4_0,
        Q4_K => Q5_0,
        Q5_K => Q5_1,
        Q6_K => Q8_0,
        t if qk <= 32 => t,
        t => {
            return Err(Error::InvalidArgument(format!(
                "no tensor type fallback is defined for type {t}"
            )))
        }
    };
    let ret = if !ne0.is_multiple_of(ret.block_size() as u64) {
        F16
    } else {
        ret
    };
    tracing::debug!(ne0, from = %target, to = %ret, "row length not divisible by block size: falling back");
    Ok(ret)
}

/// One tensor as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// GGUF name.
    pub name: &'a str,
    /// Current (source) type.
    pub ty: GgmlType,
    /// Dims in ggml order.
    pub ne: &'a [u64],
}

/// The types llama-quantize would give `tensors` (visited in the given order, which should be
/// [`llama_tensor_order`]) for `mix`. `pure` skips the per-tensor rules (`--pure`), keeping only
/// the shape fallback.
pub fn plan_tensor_types(
    mix: QuantMix,
    facts: &ModelFacts,
    tensors: &[PlanInput<'_>],
    pure: bool,
) -> Result<Vec<GgmlType>> {
    let default_type = mix.default_type();
    let cats: Vec<Category> = tensors.iter().map(|t| category(t.name)).collect();
    let n_attention_wv = cats.iter().filter(|c| is_attn_v_like(**c)).count() as i32;
    let has_tied_embeddings = !cats.contains(&Category::Output);
    let mut state = State {
        mix,
        facts,
        n_attention_wv,
        i_attention_wv: 0,
        i_ffn_down: 0,
        i_ffn_gate: 0,
        i_ffn_up: 0,
        has_tied_embeddings,
    };
    let mut out = Vec::with_capacity(tensors.len());
    let mut fallbacks = 0usize;
    for (t, &cat) in tensors.iter().zip(&cats) {
        let n_dims = ggml_n_dims(t.ne);
        if !tensor_allows_quantization(t.name, n_dims) {
            out.push(t.ty);
            continue;
        }
        let mut new_type = default_type;
        if default_type.is_quantized() {
            if !pure {
                new_type = state.get_type(new_type, t, cat)?;
            }
            let planned = new_type;
            new_type = tensor_type_fallback(t.ne.first().copied().unwrap_or(1), new_type)?;
            fallbacks += usize::from(new_type != planned);
        }
        out.push(new_type);
    }
    if fallbacks > 0 {
        tracing::warn!(
            fallbacks,
            "{fallbacks} tensor(s) have rows that are not a multiple of the block size: they use llama.cpp's fallback types (RUST_LOG=debug lists them)"
        );
    }
    Ok(out)
}

/// `ggml_n_dims`: dims after dropping trailing 1s (at least 1).
pub fn ggml_n_dims(ne: &[u64]) -> usize {
    let mut n = ne.len();
    while n > 1 && ne[n - 1] == 1 {
        n -= 1;
    }
    n.max(1)
}

struct State<'a> {
    mix: QuantMix,
    facts: &'a ModelFacts,
    n_attention_wv: i32,
    i_attention_wv: i32,
    i_ffn_down: i32,
    i_ffn_gate: i32,
    i_ffn_up: i32,
    has_tied_embeddings: bool,
}

impl State<'_> {
    /// `layer_info`: the counter, or the layer parsed from the name for MoE models.
    fn layer_info(&self, counter: i32, name: &str) -> Result<(i32, i32)> {
        let n_layer = self.facts.n_layer as i32;
        if self.facts.n_expert > 1 {
            let i = layer_of(name).ok_or_else(|| {
                Error::InvalidArgument(format!("failed to determine layer for tensor {name}"))
            })?;
            if i < 0 || i >= n_layer {
                return Err(Error::InvalidArgument(format!(
                    "bad layer {i} for tensor {name}: must be in [0, {n_layer})"
                )));
            }
            return Ok((i, n_layer));
        }
        Ok((counter, n_layer))
    }

    /// `llama_tensor_get_type_impl`, restricted to the mixes in [`QuantMix`].
    fn get_type(
        &mut self,
        mut new_type: GgmlType,
        t: &PlanInput<'_>,
        cat: Category,
    ) -> Result<GgmlType> {
        use GgmlType::*;
        let q4km = self.mix == QuantMix::Q4_K_M;
        let falcon = self.facts.is_falcon();
        let n_expert = self.facts.n_expert;
        if cat == Category::Output || (self.has_tied_embeddings && cat == Category::TokenEmbd) {
            let nx = t.ne.first().copied().unwrap_or(1);
            if falcon || nx % new_type.block_size() as u64 != 0 {
                new_type = Q8_0;
            } else if new_type != Q8_0 {
                new_type = Q6_K;
            }
        } else if cat == Category::TokenEmbd {
            // no rule for these mixes
        } else if is_attn_v_like(cat) {
            if q4km && use_more_bits(self.i_attention_wv, self.n_attention_wv) {
                new_type = Q6_K;
            }
            if self.facts.is_llama_70b() && matches!(new_type, Q3_K | Q4_K) {
                new_type = Q5_K;
            }
            if n_expert == 8 {
                new_type = Q8_0;
            }
            self.i_attention_wv += 1;
        } else if cat == Category::AttnK {
            if n_expert == 8 {
                new_type = Q8_0;
            }
        } else if cat == Category::AttnQ {
            // no rule for these mixes
        } else if cat == Category::FfnDown {
            let (i_layer, n_layer) = self.layer_info(self.i_ffn_down, t.name)?;
            if q4km {
                if falcon {
                    new_type = if i_layer < n_layer / 16 {
                        Q6_K
                    } else if use_more_bits(i_layer, n_layer) {
                        Q5_K
                    } else {
                        Q4_K
                    };
                } else if use_more_bits(i_layer, n_layer) {
                    new_type = Q6_K;
                }
            }
            self.i_ffn_down += 1;
        } else if cat == Category::AttnOutput {
            if !falcon && n_expert == 8 && q4km {
                new_type = Q5_K;
            }
        } else if cat == Category::AttnQkv {
            if q4km {
                new_type = Q5_K;
            }
        } else if cat == Category::FfnGate {
            self.layer_info(self.i_ffn_gate, t.name)?;
            self.i_ffn_gate += 1;
        } else if cat == Category::FfnUp {
            self.layer_info(self.i_ffn_up, t.name)?;
            self.i_ffn_up += 1;
        }
        Ok(new_type)
    }
}
