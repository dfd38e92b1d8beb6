//! llama.cpp's LoRA adapter GGUF (what Ollama's `ADAPTER` line loads), from already-read
//! A/B matrices.
//!
//! Layout, as `convert_lora_to_gguf.py` writes and `src/llama-adapter.cpp` checks it:
//! `general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha` (f32),
//! `general.architecture` of the base; tensors `<base tensor name>.lora_a` with ggml
//! `ne = [in, r]` (PEFT's `lora_A.weight [r, in]` as is) and `.lora_b` with `ne = [r, out]`
//! (`lora_B.weight [out, r]`). The base's q/k RoPE row permutation is a permutation of output
//! rows, so it applies to B only (A's rows are the rank).
//!
//! Scale: llama.cpp applies `alpha / r` to each pair, with one `alpha` per file and `r` read
//! from that pair's B (`b.ne[0]`), so per-pair ranks are represented as they are. A pair whose
//! wanted scale differs from `alpha / r` (a per-module alpha, or rsLoRA with per-module ranks)
//! gets the ratio folded into its B, so that llama.cpp computes the wanted `scale · B · A`.
//!
//! Tensor type: every A and B is written as one [`LoraTensorType`] (F32, F16 or BF16, with
//! `general.file_type` to match); F16 and BF16 round with ggml's round-to-nearest-even (the
//! crate's codecs, as the model export uses them). A value that does not fit the type (an f16
//! overflow, possibly caused by a folded scale) is an error naming the tensor, never an infinity
//! in the file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::codec::fp::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::mix::llama_tensor_order;
use crate::naming::{hf_to_gguf_name, permute_qk, qk_kind, QkKind};
use crate::quantize::GGML_QNT_VERSION;
use crate::types::{GgmlType, LlamaFileType};
use crate::writer::{GgufWriter, TensorSpec};

/// Relative difference between a pair's wanted scale and llama.cpp's `alpha / r` below which
/// B is written unchanged (rounding noise of computing the same scale two ways).
const SCALE_TOLERANCE: f64 = 1e-6;

/// The type every A and B of a LoRA adapter GGUF is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoraTensorType {
    /// 32-bit floats: the adapter's values as they are (`general.file_type` ALL_F32).
    F32,
    /// IEEE half, round to nearest even (MOSTLY_F16).
    F16,
    /// bfloat16, round to nearest even (MOSTLY_BF16).
    BF16,
}

impl LoraTensorType {
    /// All types, in the order the names are listed in messages.
    pub const ALL: [LoraTensorType; 3] = [Self::F32, Self::F16, Self::BF16];

    /// The ggml tensor type written.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::BF16 => GgmlType::BF16,
        }
    }

    /// The `general.file_type` written.
    pub fn file_type(self) -> LlamaFileType {
        match self {
            Self::F32 => LlamaFileType::AllF32,
            Self::F16 => LlamaFileType::MostlyF16,
            Self::BF16 => LlamaFileType::MostlyBF16,
        }
    }

    /// The lower-case name (`"f32"`, `"f16"`, `"bf16"`), as `convert_lora_to_gguf.py --outtype`.
    pub fn name(self) -> &'static str {
        self.ggml_type().name()
    }

    /// Whether `x` is still finite once rounded to this type (ggml's rounding).
    fn fits(self, x: f32) -> bool {
        match self {
            Self::F32 => x.is_finite(),
            Self::F16 => f16_to_f32(f32_to_f16(x)).is_finite(),
            Self::BF16 => bf16_to_f32(f32_to_bf16(x)).is_finite(),
        }
    }
}

impl fmt::Display for LoraTensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LoraTensorType {
    type Err = Error;

    /// `f32`, `f16` or `bf16`, case-insensitive.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name() == lower)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown LoRA tensor type '{s}' (expected one of f32, f16, bf16)"
                ))
            })
    }
}

/// One adapted base tensor: its A and B (PEFT layout) and the scale `B · A` is applied with.
#[derive(Debug, Clone, Copy)]
pub struct LoraPair<'a> {
    /// HF name of the adapted base weight (`model.layers.0.self_attn.q_proj.weight`).
    pub target: &'a str,
    /// Name of A in the source (named in messages).
    pub a_name: &'a str,
    /// Name of B in the source (named in messages).
    pub b_name: &'a str,
    /// A, row-major `[r, in]`.
    pub a: &'a [f32],
    /// B, row-major `[out, r]`.
    pub b: &'a [f32],
    /// Rank of this pair.
    pub r: usize,
    /// Input width of the base weight.
    pub d_in: usize,
    /// Output width of the base weight.
    pub d_out: usize,
    /// The scale the adapter applies to `B · A` for this pair.
    pub scale: f64,
}

/// A LoRA adapter for a `llama`-architecture base.
#[derive(Debug, Clone)]
pub struct LoraAdapterGguf<'a> {
    /// `adapter.lora.alpha`.
    pub alpha: f32,
    /// Query heads of the base (q row permutation).
    pub n_head: usize,
    /// Key/value heads of the base (k row permutation).
    pub n_head_kv: usize,
    /// The adapted tensors, any order.
    pub pairs: Vec<LoraPair<'a>>,
    /// The type every A and B is written as.
    pub tensor_type: LoraTensorType,
    /// The adapter's weight file (named in messages).
    pub origin: PathBuf,
}

/// What [`write_lora_adapter`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraWriteReport {
    /// Number of adapted base tensors.
    pub targets: usize,
    /// Pairs whose B carries a folded scale factor (see the module docs).
    pub rescaled: usize,
    /// Bytes written.
    pub bytes_out: u64,
}

/// A tensor to write: its source name, values, and for B of q/k the permutation
/// `(rows, cols, heads)`.
struct Job<'a> {
    name: &'a str,
    values: &'a [f32],
    factor: Option<f32>,
    permute: Option<(usize, usize, usize)>,
}

fn check_pair(p: &LoraPair<'_>, origin: &Path) -> Result<()> {
    for (name, v, want, shape) in [
        (p.a_name, p.a, p.r * p.d_in, [p.r, p.d_in]),
        (p.b_name, p.b, p.d_out * p.r, [p.d_out, p.r]),
    ] {
        if v.len() != want {
            return Err(Error::convert(
                origin,
                format!(
                    "tensor `{name}` has {} values, shape {shape:?} needs {want}",
                    v.len()
                ),
            ));
        }
        if let Some(pos) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::convert(
                origin,
                format!("tensor `{name}` has a non-finite value at index {pos}"),
            ));
        }
    }
    if p.r == 0 || !p.scale.is_finite() {
        return Err(Error::convert(
            origin,
            format!(
                "`{}`: rank {} and scale {} are not usable",
                p.target, p.r, p.scale
            ),
        ));
    }
    Ok(())
}

/// Refuses a tensor with a value that is not finite once written as `ty`: with F32 only a
/// folded scale can overflow (the input was checked finite), with F16 any value beyond ±65504
/// (rounded) does.
fn check_fits(job: &Job<'_>, v: &[f32], ty: LoraTensorType, origin: &Path) -> Result<()> {
    let Some(pos) = v.iter().position(|&x| !ty.fits(x)) else {
        return Ok(());
    };
    let message = if ty == LoraTensorType::F32 {
        format!(
            "tensor `{}` overflows at index {pos} once its scale is folded in",
            job.name
        )
    } else {
        let folded = if job.factor.is_some() {
            " once its scale is folded in"
        } else {
            ""
        };
        format!(
            "tensor `{}` does not fit {ty}: {:e} at index {pos}{folded} rounds to infinity \
             (write the adapter as f32)",
            job.name, v[pos]
        )
    };
    Err(Error::convert(origin, message))
}

/// Writes `adapter` to the GGUF file `out` (atomically).
pub fn write_lora_adapter(adapter: &LoraAdapterGguf<'_>, out: &Path) -> Result<LoraWriteReport> {
    let origin = adapter.origin.as_path();
    if adapter.pairs.is_empty() {
        return Err(Error::convert(origin, "no lora_A/lora_B tensors"));
    }
    let mut named = Vec::with_capacity(adapter.pairs.len());
    for p in &adapter.pairs {
        check_pair(p, origin)?;
        let gguf = hf_to_gguf_name(p.target)
            .filter(|g| g.starts_with("blk."))
            .ok_or_else(|| {
                Error::convert(
                    origin,
                    format!(
                        "`{}` targets `{}`, which is not a Llama projection",
                        p.a_name, p.target
                    ),
                )
            })?;
        named.push((gguf, p));
    }
    named.sort_by(|x, y| llama_tensor_order(&x.0, &y.0));

    let mut md = Metadata::new();
    md.set("general.architecture", "llama");
    md.set("general.type", "adapter");
    md.set("adapter.type", "lora");
    md.set("adapter.lora.alpha", adapter.alpha);
    md.set("general.file_type", adapter.tensor_type.file_type().id());
    md.set("general.quantization_version", GGML_QNT_VERSION);
    let mut w = GgufWriter::new(md)?;
    let ty = adapter.tensor_type.ggml_type();
    let mut jobs: Vec<Job<'_>> = Vec::with_capacity(2 * named.len());
    let mut rescaled = 0;
    for (gguf, p) in &named {
        let applied = f64::from(adapter.alpha) / p.r as f64;
        let ratio = p.scale / applied;
        let factor = ((ratio - 1.0).abs() > SCALE_TOLERANCE).then_some(ratio as f32);
        rescaled += usize::from(factor.is_some());
        let heads = match qk_kind(gguf) {
            Some(QkKind::Query) => Some(adapter.n_head),
            Some(QkKind::Key) => Some(adapter.n_head_kv),
            None => None,
        };
        w.add_tensor(TensorSpec::new(
            format!("{gguf}.lora_a"),
            ty,
            vec![p.d_in as u64, p.r as u64],
        ))?;
        jobs.push(Job {
            name: p.a_name,
            values: p.a,
            factor: None,
            permute: None,
        });
        w.add_tensor(TensorSpec::new(
            format!("{gguf}.lora_b"),
            ty,
            vec![p.r as u64, p.d_out as u64],
        ))?;
        jobs.push(Job {
            name: p.b_name,
            values: p.b,
            factor,
            permute: heads.map(|h| (p.d_out, p.r, h)),
        });
    }
    let bytes_out = w.write_to_file(out, |i, _spec, sink| {
        let job = &jobs[i];
        let mut v = match job.factor {
            Some(f) => job.values.iter().map(|x| x * f).collect(),
            None => job.values.to_vec(),
        };
        if let Some((rows, cols, heads)) = job.permute {
            v = permute_qk(&v, rows, cols, heads)?;
        }
        check_fits(job, &v, adapter.tensor_type, origin)?;
        sink.write_f32(&v)
    })?;
    Ok(LoraWriteReport {
        targets: named.len(),
        rescaled,
        bytes_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::GgufFile;

    const A: [f32; 8] = [0.1, -0.2, 1.0 / 3.0, 0.5, -1e-3, 2.5e-6, 7.0, -0.0];
    const B: [f32; 6] = [0.3, -65519.0, 1e-8, 0.25, -3.0, 100.0];

    fn adapter<'a>(a: &'a [f32], b: &'a [f32], ty: LoraTensorType) -> LoraAdapterGguf<'a> {
        LoraAdapterGguf {
            alpha: 2.0,
            n_head: 1,
            n_head_kv: 1,
            pairs: vec![LoraPair {
                target: "model.layers.0.mlp.up_proj.weight",
                a_name: "up.lora_A",
                b_name: "up.lora_B",
                a,
                b,
                r: 2,
                d_in: 4,
                d_out: 3,
                scale: 1.0,
            }],
            tensor_type: ty,
            origin: "adapter_model.safetensors".into(),
        }
    }

    /// The stored bytes of a tensor.
    fn bytes(f: &GgufFile, name: &str) -> Vec<u8> {
        f.tensor_data(name).unwrap().to_vec()
    }

    #[test]
    fn each_type_stores_ggml_rounding_and_its_file_type() {
        let tmp = tempfile::tempdir().unwrap();
        for (ty, ggml, ftype) in [
            (LoraTensorType::F32, GgmlType::F32, 0),
            (LoraTensorType::F16, GgmlType::F16, 1),
            (LoraTensorType::BF16, GgmlType::BF16, 32),
        ] {
            let out = tmp.path().join(format!("{ty}.gguf"));
            write_lora_adapter(&adapter(&A, &B, ty), &out).unwrap();
            let f = GgufFile::open(&out).unwrap();
            assert_eq!(f.metadata().get_u32("general.file_type").unwrap(), ftype);
            let encode = |v: &[f32]| -> Vec<u8> {
                v.iter()
                    .flat_map(|&x| match ty {
                        LoraTensorType::F32 => x.to_le_bytes().to_vec(),
                        LoraTensorType::F16 => f32_to_f16(x).to_le_bytes().to_vec(),
                        LoraTensorType::BF16 => f32_to_bf16(x).to_le_bytes().to_vec(),
                    })
                    .collect()
            };
            for (name, values) in [("lora_a", &A[..]), ("lora_b", &B[..])] {
                let name = format!("blk.0.ffn_up.weight.{name}");
                assert_eq!(f.tensor(&name).unwrap().ty, ggml, "{name}");
                assert_eq!(bytes(&f, &name), encode(values), "{ty} {name}");
            }
        }
    }

    #[test]
    fn a_value_rounding_to_infinity_is_refused_naming_the_tensor() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("a.gguf");
        // 65520 is the first f32 that rounds (to even) to the f16 infinity
        let mut b = B;
        b[4] = 65520.0;
        let e = write_lora_adapter(&adapter(&A, &b, LoraTensorType::F16), &out)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`up.lora_B` does not fit f16") && e.contains("index 4"),
            "{e}"
        );
        assert!(!out.exists());
        // a folded scale that leaves f16's range: B · (scale / (alpha / r)) = 100 · 1000
        let mut ad = adapter(&A, &B, LoraTensorType::F16);
        ad.pairs[0].scale = 1000.0;
        let e = write_lora_adapter(&ad, &out).unwrap_err().to_string();
        assert!(e.contains("`up.lora_B`") && e.contains("folded"), "{e}");
        assert!(!out.exists());
        ad.tensor_type = LoraTensorType::F32;
        write_lora_adapter(&ad, &out).unwrap();
        ad.tensor_type = LoraTensorType::BF16;
        write_lora_adapter(&ad, &out).unwrap();
    }

    #[test]
    fn names_parse_case_insensitively_and_others_are_refused() {
        for ty in LoraTensorType::ALL {
            assert_eq!(ty.name().parse::<LoraTensorType>().unwrap(), ty);
            assert_eq!(
                ty.name().to_uppercase().parse::<LoraTensorType>().unwrap(),
                ty
            );
        }
        let e = "q8_0".parse::<LoraTensorType>().unwrap_err().to_string();
        assert!(e.contains("'q8_0'") && e.contains("f32, f16, bf16"), "{e}");
    }
}
