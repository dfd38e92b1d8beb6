//! LoRA adapters for the tiny llamas: random A/B pairs written with tb-gguf's
//! `write_lora_adapter` (the exporter's own layout), hand-written adapter GGUFs for the bad
//! cases, and the merged model (`W + scale·B·A` in f32, computed from the files as written) that
//! a base + adapter must reproduce.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tb_gguf::export::{LoraAdapterGguf, LoraPair, LoraTensorType};
use tb_gguf::{GgmlType, GgufFile, GgufWriter, Metadata, TensorSpec};

use super::tiny::TinyLlama;

/// The seven projections of a layer, GGUF names without `blk.{i}.` and `.weight`.
pub const PROJECTIONS: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// `(rows, cols)` of projection `proj` of `tiny`.
pub fn projection_shape(tiny: &TinyLlama, proj: &str) -> (usize, usize) {
    let d = tiny.n_embd as usize;
    let kv = d / tiny.n_head as usize * tiny.n_head_kv as usize;
    let ff = tiny.n_ff as usize;
    match proj {
        "attn_q" | "attn_output" => (d, d),
        "attn_k" | "attn_v" => (kv, d),
        "ffn_gate" | "ffn_up" => (ff, d),
        "ffn_down" => (d, ff),
        other => panic!("not a projection: {other}"),
    }
}

/// Writes a LoRA adapter GGUF for `tiny` with tb-gguf's writer: every projection of every layer
/// adapted, rank 4 (8 for `ffn_down`), alpha 8, A ~ N(0, 1/in), B ~ N(0, `b_std`²), from `seed`,
/// A and B stored as `ty`.
pub fn write_random_adapter(
    tiny: &TinyLlama,
    path: &Path,
    seed: u64,
    b_std: f32,
    ty: LoraTensorType,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut owned = Vec::new();
    for layer in 0..tiny.n_layer {
        for proj in PROJECTIONS {
            let (rows, cols) = projection_shape(tiny, proj);
            let r = if proj == "ffn_down" { 8 } else { 4 };
            let a_std = 1.0 / (cols as f32).sqrt();
            let a: Vec<f32> = (0..r * cols).map(|_| a_std * normal(&mut rng)).collect();
            let b: Vec<f32> = (0..rows * r).map(|_| b_std * normal(&mut rng)).collect();
            let target = tb_gguf::gguf_to_hf_name(&format!("blk.{layer}.{proj}.weight"))
                .expect("an HF name for every projection");
            owned.push((target, a, b, r, rows, cols));
        }
    }
    let alpha = 8.0f32;
    let pairs = owned
        .iter()
        .map(|(target, a, b, r, rows, cols)| LoraPair {
            target,
            a_name: target,
            b_name: target,
            a,
            b,
            r: *r,
            d_in: *cols,
            d_out: *rows,
            scale: f64::from(alpha) / *r as f64,
        })
        .collect();
    let adapter = LoraAdapterGguf {
        alpha,
        n_head: tiny.n_head as usize,
        n_head_kv: tiny.n_head_kv as usize,
        pairs,
        tensor_type: ty,
        origin: path.to_path_buf(),
    };
    tb_gguf::write_lora_adapter(&adapter, path).expect("write the LoRA adapter");
}

/// The metadata of a LoRA adapter GGUF: `general.type`, `adapter.type`, the architecture and,
/// when given, `adapter.lora.alpha`.
pub fn adapter_metadata(arch: &str, general_type: &str, alpha: Option<f32>) -> Metadata {
    let mut md = Metadata::new();
    md.set("general.architecture", arch);
    md.set("general.type", general_type);
    md.set("adapter.type", "lora");
    if let Some(a) = alpha {
        md.set("adapter.lora.alpha", a);
    }
    md
}

/// Writes a GGUF holding `tensors` (`(name, ne, values)`) as `ty` under `md`.
pub fn write_tensors(
    path: &Path,
    md: Metadata,
    tensors: &[(String, Vec<u64>, Vec<f32>)],
    ty: GgmlType,
) {
    let mut w = GgufWriter::new(md).expect("writer");
    for (name, ne, _) in tensors {
        let t = if ne.len() == 1 { GgmlType::F32 } else { ty };
        w.add_tensor(TensorSpec::new(name.clone(), t, ne.clone()))
            .expect("add tensor");
    }
    w.write_to_file(path, |i, _, sink| sink.write_f32(&tensors[i].2))
        .expect("write the GGUF");
}

/// `base` with `adapter` merged into its weights as llama.cpp applies it
/// (`W + scale·B·A`, `scale = alpha / r` with `r = lora_b.ne[0]`, `1` without alpha), from the
/// tensors as the two files hold them (base dequantised), written as `ty` (norms F32) with the
/// metadata `md`.
pub fn write_merged(base: &Path, adapter: &Path, md: Metadata, out: &Path, ty: GgmlType) {
    let base = GgufFile::open(base).expect("open the base");
    let lora = GgufFile::open(adapter).expect("open the adapter");
    let alpha = lora
        .metadata()
        .get("adapter.lora.alpha")
        .and_then(|v| v.as_f32())
        .unwrap_or(0.0);
    let mut tensors = Vec::new();
    for info in base.tensors() {
        let mut w = base.tensor_f32(&info.name).expect("base tensor");
        let a_name = format!("{}.lora_a", info.name);
        if let Ok(a_info) = lora.tensor(&a_name) {
            let a = lora.tensor_f32(&a_name).unwrap();
            let b = lora.tensor_f32(&format!("{}.lora_b", info.name)).unwrap();
            let (cols, r) = (a_info.ne[0] as usize, a_info.ne[1] as usize);
            let rows = w.len() / cols;
            let scale = if alpha == 0.0 { 1.0 } else { alpha / r as f32 };
            for o in 0..rows {
                for i in 0..cols {
                    let ba: f64 = (0..r)
                        .map(|j| f64::from(b[o * r + j]) * f64::from(a[j * cols + i]))
                        .sum();
                    let v = f64::from(w[o * cols + i]) + f64::from(scale) * ba;
                    w[o * cols + i] = v as f32;
                }
            }
        }
        tensors.push((info.name.clone(), info.ne.clone(), w));
    }
    write_tensors(out, md, &tensors, ty);
}
