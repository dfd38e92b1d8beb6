//! Byte-for-byte conformance of our codecs with llama.cpp's reference codecs, called through
//! FFI in node-llama-cpp's prebuilt `libggml-base.so` (the same library llama.cpp and Ollama's
//! runner use).
//!
//! For each codec and each data family we require:
//! * `quantize` output identical to `quantize_row_*_ref` (all bytes, all blocks);
//! * our `dequantize` identical (bit for bit, NaN == NaN) to `dequantize_row_*` on the same bytes,
//!   including bytes that are random garbage rather than quantizer output.
//!
//! Accepted differences: none. (gguf-py warns that Q4_0's `x*id + 8.5f` rounding depends on
//! whether the compiler fused it into an FMA; the prebuilt `libggml-base.so` is compiled for
//! baseline x86-64 and contains no FMA instructions, and Rust never fuses, so the results agree
//! exactly. If a future library build used FMA, Q4_0/Q4_1/Q5_0/Q5_1 codes could differ by ±1 in
//! rare ties; this test would then fail and report the count.)

mod common;

use common::{Gen, Ggml};
use tb_gguf::codec;
use tb_gguf::GgmlType;

const TYPES: [GgmlType; 10] = [
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// Data families, each `n` values long (n is a multiple of 256).
fn families(n: usize) -> Vec<(&'static str, Vec<f32>)> {
    let mut g = Gen::new(0x7b_9e_11);
    let mut out = Vec::new();
    out.push(("normal", g.vec(n, |g| g.normal())));
    out.push(("normal*0.02", g.vec(n, |g| 0.02 * g.normal())));
    out.push(("cauchy", g.vec(n, |g| g.cauchy())));
    out.push(("student-t3", g.vec(n, |g| g.student_t3())));
    out.push(("zeros", vec![0.0; n]));
    out.push(("neg-zeros", vec![-0.0; n]));
    out.push(("constant+", vec![0.731; n]));
    out.push(("constant-", vec![-3.25; n]));
    out.push((
        "tiny",
        g.vec(n, |g| {
            let e = -30.0 + 22.0 * g.uniform();
            let s = if g.uniform() < 0.5 { -1.0 } else { 1.0 };
            s * 10f32.powf(e)
        }),
    ));
    out.push(("fp16-subnormal-range", g.vec(n, |g| 1e-6 * g.normal())));
    out.push((
        "outliers",
        g.vec(n, |g| {
            if g.below(97) == 0 {
                (1e3 + 1e4 * g.uniform()) * if g.uniform() < 0.5 { -1.0 } else { 1.0 }
            } else {
                g.normal()
            }
        }),
    ));
    out.push(("huge", g.vec(n, |g| 6e4 * g.normal())));
    out.push(("integers(ties)", g.vec(n, |g| g.below(17) as f32 - 8.0)));
    out.push((
        "halves(ties)",
        g.vec(n, |g| (g.below(33) as f32 - 16.0) * 0.5),
    ));
    out.push(("positive-only", g.vec(n, |g| g.uniform() + 0.1)));
    out.push(("negative-only", g.vec(n, |g| -g.uniform() - 0.1)));
    // patchwork: per 16 values, pick zero / tiny / normal / constant, to reach the k-quant
    // sub-block skip paths (scale 0 in one sub-block, not in others)
    let mut patch = Vec::with_capacity(n);
    while patch.len() < n {
        let kind = g.below(5);
        for _ in 0..16 {
            patch.push(match kind {
                0 => 0.0,
                1 => 1e-20 * g.normal(),
                2 => g.normal(),
                3 => 0.5,
                _ => 100.0 * g.normal(),
            });
        }
    }
    out.push(("patchwork", patch));
    // a few values per block, the rest zero
    out.push((
        "sparse",
        g.vec(n, |g| if g.below(16) == 0 { g.normal() } else { 0.0 }),
    ));
    out
}

fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn count_block_mismatches(ty: GgmlType, ours: &[u8], theirs: &[u8]) -> usize {
    ours.chunks(ty.type_size())
        .zip(theirs.chunks(ty.type_size()))
        .filter(|(a, b)| a != b)
        .count()
}

#[test]
fn quantize_is_byte_identical_to_ggml_ref() {
    let ggml = Ggml::get();
    let n = 256 * 64;
    let mut failures = Vec::new();
    let mut checked_blocks = 0usize;
    for (name, data) in families(n) {
        for ty in TYPES {
            let theirs = ggml.quantize(ty, &data);
            let mut ours = vec![0u8; theirs.len()];
            codec::quantize(ty, &data, &mut ours).expect("quantize");
            let bad = count_block_mismatches(ty, &ours, &theirs);
            checked_blocks += theirs.len() / ty.type_size();
            if bad > 0 {
                failures.push(format!("{ty} on {name}: {bad} blocks differ"));
            }
            // the parallel fast path must give the same bytes as the scalar reference
            let mut par = vec![0u8; theirs.len()];
            codec::quantize_par(ty, &data, &mut par).expect("quantize_par");
            assert!(
                par == ours,
                "{ty} on {name}: parallel path differs from reference"
            );
        }
    }
    assert!(checked_blocks > 100_000);
    assert!(
        failures.is_empty(),
        "mismatches vs ggml:\n{}",
        failures.join("\n")
    );
}

#[test]
fn dequantize_is_identical_to_ggml() {
    let ggml = Ggml::get();
    let n = 256 * 16;
    let mut failures = Vec::new();
    for (name, data) in families(n) {
        for ty in TYPES {
            let bytes = ggml.quantize(ty, &data);
            let theirs = ggml.dequantize(ty, &bytes);
            let ours = codec::dequantize_to_vec(ty, &bytes).expect("dequantize");
            let mut reference = vec![0f32; ours.len()];
            codec::dequantize(ty, &bytes, &mut reference).expect("dequantize ref");
            let bad = ours
                .iter()
                .zip(&theirs)
                .filter(|(a, b)| !same_f32(**a, **b))
                .count();
            let bad_ref = reference
                .iter()
                .zip(&ours)
                .filter(|(a, b)| !same_f32(**a, **b))
                .count();
            if bad > 0 || bad_ref > 0 {
                failures.push(format!(
                    "{ty} on {name}: {bad} values differ from ggml, {bad_ref} par/ref"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "mismatches vs ggml:\n{}",
        failures.join("\n")
    );
}

#[test]
fn dequantize_random_bytes_is_identical_to_ggml() {
    // arbitrary block contents (all scale/min/code combinations a corrupt or foreign file
    // might hold), not just what the quantizer produces
    let ggml = Ggml::get();
    let mut g = Gen::new(99);
    for ty in TYPES {
        let n_blocks = 4096 / ty.block_size().max(1) * 8;
        let mut bytes: Vec<u8> = (0..n_blocks * ty.type_size())
            .map(|_| g.below(256) as u8)
            .collect();
        // keep fp16 scales finite most of the time so the comparison is about values
        if ty == GgmlType::F16 {
            for c in bytes.chunks_mut(2) {
                c[1] &= 0x7b;
            }
        }
        let theirs = ggml.dequantize(ty, &bytes);
        let ours = codec::dequantize_to_vec(ty, &bytes).expect("dequantize");
        let bad = ours
            .iter()
            .zip(&theirs)
            .filter(|(a, b)| !same_f32(**a, **b))
            .count();
        assert_eq!(
            bad,
            0,
            "{ty}: {bad} of {} values differ from ggml",
            ours.len()
        );
    }
}

#[test]
fn multi_row_tensors_match_ggml_row_by_row() {
    // quantize_row_*_ref treats its input as one long row; llama-quantize calls it per chunk of
    // rows. Blocks never cross rows (row length is a multiple of the block size), so both views
    // must agree with ours for several row lengths.
    let ggml = Ggml::get();
    let mut g = Gen::new(5);
    for ty in TYPES {
        for &(ne0, rows) in &[(256usize, 3usize), (512, 5), (768, 2), (4096, 2)] {
            let data = g.vec(ne0 * rows, |g| g.normal() * 0.05);
            let mut whole = Vec::new();
            for r in 0..rows {
                whole.extend(ggml.quantize(ty, &data[r * ne0..(r + 1) * ne0]));
            }
            let ours = codec::quantize_to_vec(ty, &data).expect("quantize");
            assert!(ours == whole, "{ty} {rows}x{ne0}");
        }
    }
}

#[test]
fn f32_codec_is_identity() {
    let mut g = Gen::new(1);
    let data = g.vec(1000, |g| g.cauchy());
    let bytes = codec::quantize_to_vec(GgmlType::F32, &data).expect("quantize");
    assert_eq!(bytes, bytemuck::cast_slice::<f32, u8>(&data));
    let back = codec::dequantize_to_vec(GgmlType::F32, &bytes).expect("dequantize");
    assert_eq!(back, data);
}
