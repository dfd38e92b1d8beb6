//! LoRA adapters in llama.cpp's GGUF form (what Ollama's `ADAPTER` line loads, and what
//! tb-gguf's `write_lora_adapter` writes), applied by the embedded engine at run time.
//!
//! The file is checked as `llama_adapter_lora_init` checks it: `general.type = "adapter"`,
//! `adapter.type = "lora"`, `general.architecture` equal to the base's, and every tensor named
//! `<base tensor>.lora_a` (ggml `ne = [in, r]`) or `<base tensor>.lora_b` (`ne = [r, out]`), in
//! complete pairs, whose base tensor exists with `ne = [in, out]`. Any float or quantized type
//! the engine decodes is accepted; A and B are dequantised to f32 once, at load (they are small).
//!
//! Each adapted linear then computes, as llama.cpp's `build_lora_mm` does,
//! `y = W·x + scale · B·(A·x)` with `scale = alpha / r` (`r` read from B, `ne[0]`), or `1` when
//! the file's `adapter.lora.alpha` is zero or absent. The base weight stays in its encoded
//! blocks: nothing is merged, so a Q4_K_M base + adapter costs the Q4_K_M file plus the f32
//! A/B matrices in memory.
//!
//! The engine applies adapters to the projections of every layer (`attn_q`, `attn_k`, `attn_v`,
//! `attn_output`, `ffn_gate`, `ffn_up`, `ffn_down`) and to `output.weight`; an adapter for
//! another base tensor (the token embedding, a norm) is refused.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use tb_gguf::GgufFile;

use super::matmul::{row_decoder, Kernel};
use super::{Error, Result};

/// `B·A` of one adapted weight, in f32, with the scale it is applied with.
#[derive(Debug, Clone)]
pub(crate) struct LoraDelta {
    /// A, row-major `[r, in]`.
    a: Vec<f32>,
    /// B, row-major `[out, r]`.
    b: Vec<f32>,
    rank: usize,
    scale: f32,
}

impl LoraDelta {
    /// `y += scale · (x·Aᵀ)·Bᵀ`.
    ///
    /// # Shapes
    /// - `x`: `[n, in]`
    /// - `y`: `[n, out]`
    pub(crate) fn add_to(&self, x: &[f32], n: usize, y: &mut [f32], kernel: Kernel) {
        let dot = kernel.dot();
        let r = self.rank;
        let cols = self.a.len() / r;
        let rows = self.b.len() / r;
        debug_assert_eq!(x.len(), n * cols);
        debug_assert_eq!(y.len(), n * rows);
        y.par_chunks_mut(rows)
            .zip(x.par_chunks(cols))
            .for_each(|(y_row, x_row)| {
                let ax: Vec<f32> = self.a.chunks_exact(cols).map(|a| dot(a, x_row)).collect();
                for (out, b) in y_row.iter_mut().zip(self.b.chunks_exact(r)) {
                    *out += self.scale * dot(b, &ax);
                }
            });
    }
}

/// An adapter file as the engine applied it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraAdapter {
    /// The adapter GGUF.
    pub path: PathBuf,
    /// `adapter.lora.alpha` (0 when the file has none: llama.cpp then applies `B·A` unscaled).
    pub alpha: f32,
    /// Base tensors it adapts.
    pub targets: usize,
}

/// Where an adapted weight goes: its GGUF name and `(rows, cols)` in the base.
pub(crate) struct Target {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
}

/// A checked adapter: the file's facts and one delta per adapted base tensor.
pub(crate) struct LoadedAdapter {
    pub info: LoraAdapter,
    pub deltas: Vec<(String, LoraDelta)>,
}

fn adapter_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Adapter {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn tensor_err(path: &Path, tensor: &str, message: impl Into<String>) -> Error {
    Error::Tensor {
        path: path.to_path_buf(),
        tensor: tensor.to_owned(),
        message: message.into(),
    }
}

/// A string key that must hold `want`.
fn expect_key(file: &GgufFile, path: &Path, key: &str, want: &str) -> Result<()> {
    match file.metadata().get(key).map(|v| v.as_str()) {
        Some(Some(v)) if v == want => Ok(()),
        Some(Some(v)) => Err(adapter_err(
            path,
            format!("`{key}` is \"{v}\", a LoRA adapter GGUF has \"{want}\""),
        )),
        Some(None) => Err(adapter_err(path, format!("`{key}` is not a string"))),
        None => Err(adapter_err(
            path,
            format!("has no `{key}`: not a LoRA adapter GGUF (it needs `{key}` = \"{want}\")"),
        )),
    }
}

/// Checks the metadata of the adapter at `path` against a base of architecture `base_arch`,
/// and returns `adapter.lora.alpha`.
fn check_metadata(file: &GgufFile, path: &Path, base_arch: &str) -> Result<f32> {
    expect_key(file, path, "general.type", "adapter")?;
    expect_key(file, path, "adapter.type", "lora")?;
    let md = file.metadata();
    match md.get("general.architecture").map(|v| v.as_str()) {
        Some(Some(arch)) if arch == base_arch => {}
        Some(Some(arch)) => {
            return Err(adapter_err(
                path,
                format!(
                    "`general.architecture` is \"{arch}\", the base model's is \"{base_arch}\""
                ),
            ))
        }
        _ => return Err(adapter_err(path, "has no string `general.architecture`")),
    }
    match md.get("adapter.lora.alpha") {
        None => Ok(0.0),
        Some(v) => match v.as_f32() {
            Some(a) if a.is_finite() => Ok(a),
            _ => Err(adapter_err(
                path,
                format!("`adapter.lora.alpha` must be a finite f32, found {v:?}"),
            )),
        },
    }
}

/// The base name and whether it is A, for an adapter tensor name.
fn split_name(name: &str) -> Option<(&str, bool)> {
    if let Some(base) = name.strip_suffix(".lora_a") {
        Some((base, true))
    } else {
        name.strip_suffix(".lora_b").map(|base| (base, false))
    }
}

/// Reads one of A/B as f32 with the dims `want` (ggml order; `None` matches any rank).
fn read_factor(
    file: &GgufFile,
    path: &Path,
    name: &str,
    want: [Option<u64>; 2],
    expected: &str,
) -> Result<Vec<f32>> {
    let info = file
        .tensor(name)
        .map_err(|_| tensor_err(path, name, "missing"))?;
    let ne: Vec<u64> = info.ne.iter().copied().chain([1, 1]).take(4).collect();
    let fits = want.iter().zip(&ne).all(|(w, &d)| w.is_none_or(|w| w == d));
    if info.ne.len() > 4 || !fits || ne[2..].iter().any(|&d| d != 1) || ne[..2].contains(&0) {
        return Err(tensor_err(
            path,
            name,
            format!("has dims {:?} (ggml order), expected {expected}", info.ne),
        ));
    }
    if row_decoder(info.ty).is_none() {
        return Err(Error::UnsupportedType {
            path: path.to_path_buf(),
            tensor: name.to_owned(),
            ty: info.ty,
        });
    }
    let values = file
        .tensor_f32(name)
        .map_err(|e| tensor_err(path, name, e.to_string()))?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(tensor_err(
            path,
            name,
            format!("has a non-finite value at index {i}"),
        ));
    }
    Ok(values)
}

/// Opens and checks the adapter at `path` against a base of architecture `base_arch`.
/// `target` looks a base tensor up by GGUF name: `Ok(None)` when the base has no such tensor,
/// an error when it has one the engine cannot adapt.
pub(crate) fn load_adapter(
    path: &Path,
    base_arch: &str,
    target: impl Fn(&str) -> Result<Option<Target>>,
) -> Result<LoadedAdapter> {
    let file = GgufFile::open(path).map_err(|source| Error::Gguf {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let alpha = check_metadata(&file, path, base_arch)?;
    let mut bases: Vec<&str> = Vec::new();
    for info in file.tensors() {
        let (base, _) = split_name(&info.name).ok_or_else(|| {
            tensor_err(
                path,
                &info.name,
                "is not a LoRA tensor (names end in `.lora_a` or `.lora_b`)",
            )
        })?;
        if !bases.contains(&base) {
            bases.push(base);
        }
    }
    if bases.is_empty() {
        return Err(adapter_err(path, "holds no LoRA tensors"));
    }
    let mut deltas = Vec::with_capacity(bases.len());
    for base in bases {
        let (a_name, b_name) = (format!("{base}.lora_a"), format!("{base}.lora_b"));
        for (have, other) in [(&a_name, &b_name), (&b_name, &a_name)] {
            if file.tensor(have).is_ok() && file.tensor(other).is_err() {
                return Err(tensor_err(path, have, format!("has no matching `{other}`")));
            }
        }
        let t = target(base)?.ok_or_else(|| {
            tensor_err(
                path,
                &a_name,
                format!("adapts `{base}`, which the base model does not have"),
            )
        })?;
        let (rows, cols) = (t.rows as u64, t.cols as u64);
        let a = read_factor(
            &file,
            path,
            &a_name,
            [Some(cols), None],
            &format!("[{cols}, rank]: the base model's `{base}` takes {cols} inputs"),
        )?;
        let rank = a.len() / t.cols;
        let b = read_factor(
            &file,
            path,
            &b_name,
            [Some(rank as u64), Some(rows)],
            &format!(
                "[{rank}, {rows}]: rank {rank} as `{a_name}`, and the base model's `{base}` \
                 has {rows} outputs"
            ),
        )?;
        let scale = if alpha == 0.0 {
            1.0
        } else {
            alpha / rank as f32
        };
        deltas.push((t.name, LoraDelta { a, b, rank, scale }));
    }
    tracing::debug!(path = %path.display(), alpha, targets = deltas.len(), "LoRA adapter checked");
    Ok(LoadedAdapter {
        info: LoraAdapter {
            path: path.to_path_buf(),
            alpha,
            targets: deltas.len(),
        },
        deltas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_adds_scaled_b_times_a_x() {
        // A = [[1, 0], [0, 1], [1, 1]] (r 3, in 2), B = [[1, 2, 3]] (out 1), scale 0.5
        let d = LoraDelta {
            a: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            b: vec![1.0, 2.0, 3.0],
            rank: 3,
            scale: 0.5,
        };
        let mut y = vec![10.0, 20.0];
        d.add_to(&[1.0, 2.0, -1.0, 0.0], 2, &mut y, Kernel::Scalar);
        // token 0: A·x = [1, 2, 3], B·that = 14; token 1: A·x = [-1, 0, -1], B·that = -4
        assert_eq!(y, vec![17.0, 18.0]);
    }

    #[test]
    fn names_split_into_base_and_factor() {
        assert_eq!(
            split_name("blk.0.attn_q.weight.lora_a"),
            Some(("blk.0.attn_q.weight", true))
        );
        assert_eq!(split_name("x.lora_b"), Some(("x", false)));
        assert_eq!(split_name("blk.0.attn_q.weight"), None);
    }
}
