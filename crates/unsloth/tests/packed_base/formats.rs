//! NF4 and Q4_K packing: codebook values, rounding, padding, error bounds, bit-exactness with
//! tb-gguf's Q4_K, and the tiled (fast) dequantisation against the scalar reference.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tb_gguf::codec::{self, BlockCodec, BlockQ4K};
use tb_gguf::GgmlType;
use tb_unsloth::packed_base::{BlockNf4, PackedWeight, QuantFormat, NF4_CODEBOOK};
use tb_unsloth::{FusedBackend, FusedError};

/// Roughly normal values (sum of uniforms), like trained weights, times `scale`.
fn normalish(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>() * scale)
        .collect()
}

#[test]
fn nf4_known_blocks_dequantise_to_codebook_times_absmax() {
    // Every code in both nibble positions: byte i holds codes (i % 16, 15 - i % 16).
    let mut qs = [0u8; 32];
    for (i, q) in qs.iter_mut().enumerate() {
        *q = (((i % 16) as u8) << 4) | (15 - (i % 16) as u8);
    }
    let block = BlockNf4 { absmax: 2.5, qs };
    let mut y = [0.0f32; 64];
    block.dequantize(&mut y);
    for i in 0..32 {
        assert_eq!(y[2 * i], NF4_CODEBOOK[i % 16] * 2.5, "value {}", 2 * i);
        assert_eq!(
            y[2 * i + 1],
            NF4_CODEBOOK[15 - i % 16] * 2.5,
            "value {}",
            2 * i + 1
        );
    }
    // bnb's rounding and packing on a hand-worked block: absmax 1; 1.0 -> 15; -0.5 -> 2
    // (below the 2|3 midpoint -0.46); 0.1 -> 8 (below the 8|9 midpoint 0.120); 0.0 -> 7.
    // The first value of each pair goes to the high nibble.
    let mut x = [0.0f32; 64];
    x[..4].copy_from_slice(&[1.0, -0.5, 0.1, 0.0]);
    let b = BlockNf4::quantize(&x);
    assert_eq!(b.absmax, 1.0);
    assert_eq!(&b.qs[..3], &[0xF2, 0x87, 0x77]);
    // Values exactly on the codebook (times absmax) come back exactly.
    let exact: Vec<f32> = NF4_CODEBOOK.iter().map(|c| c * 3.0).collect();
    let w = PackedWeight::pack("exact.weight", QuantFormat::Nf4, &exact, 1, 16).unwrap();
    assert_eq!(w.dequantize(), exact);
    let codes: Vec<u8> = (0..16)
        .map(|i| w.nf4_blocks().unwrap()[0].code(i))
        .collect();
    assert_eq!(codes, (0..16).collect::<Vec<u8>>());
}

/// Half the widest gap between neighbouring NF4 codes: the worst rounding error per unit of
/// absmax.
fn nf4_half_gap() -> f32 {
    NF4_CODEBOOK
        .windows(2)
        .map(|w| (w[1] - w[0]) / 2.0)
        .fold(0.0, f32::max)
}

#[test]
#[expect(clippy::print_stderr, reason = "the test reports the measured error")]
fn nf4_round_trip_error_is_bounded_per_block() {
    let mut rng = StdRng::seed_from_u64(300);
    let (d_out, d_in) = (40, 192);
    let x = normalish(&mut rng, d_out * d_in, 0.02);
    let w = PackedWeight::pack("w", QuantFormat::Nf4, &x, d_out, d_in).unwrap();
    let y = w.dequantize();
    let bound = nf4_half_gap() * (1.0 + 1e-6);
    let (mut worst, mut sq, mut norm) = (0.0f32, 0.0f64, 0.0f64);
    for (blk, (xs, ys)) in x.chunks(64).zip(y.chunks(64)).enumerate() {
        let absmax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert_eq!(w.nf4_blocks().unwrap()[blk].absmax, absmax);
        for (a, b) in xs.iter().zip(ys) {
            let e = (a - b).abs() / absmax;
            assert!(e <= bound, "block {blk}: error {e} x absmax > {bound}");
            worst = worst.max(e);
            sq += f64::from((a - b) * (a - b));
            norm += f64::from(a * a);
        }
    }
    let rel_rms = (sq / norm).sqrt();
    eprintln!("NF4 round trip: worst {worst:.4} x absmax (bound {bound:.4}), relative RMS error {rel_rms:.4}");
    assert!(rel_rms < 0.12, "relative RMS error {rel_rms}");
}

#[test]
fn nf4_pads_the_last_block_of_each_row() {
    let mut rng = StdRng::seed_from_u64(301);
    let (d_out, d_in) = (3, 100);
    let mut x = normalish(&mut rng, d_out * d_in, 0.05);
    // Row 1 is 1000x larger: blocks never cross rows, so rows 0 and 2 keep their precision.
    for v in &mut x[d_in..2 * d_in] {
        *v *= 1000.0;
    }
    let w = PackedWeight::pack("w", QuantFormat::Nf4, &x, d_out, d_in).unwrap();
    assert_eq!(w.blocks_per_row(), 2);
    assert_eq!(
        w.packed_bytes(),
        d_out * 2 * std::mem::size_of::<BlockNf4>()
    );
    let blocks = w.nf4_blocks().unwrap();
    let y = w.dequantize();
    assert_eq!(y.len(), d_out * d_in);
    for row in 0..d_out {
        let xs = &x[row * d_in..(row + 1) * d_in];
        let tail = &blocks[row * 2 + 1];
        // The padded block's scale comes from its 36 real values only; the padding is code 7.
        let tail_max = xs[64..].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert_eq!(tail.absmax, tail_max, "row {row}");
        assert!(
            (36..64).all(|i| tail.code(i) == 7),
            "row {row}: padding not zero-coded"
        );
        // Each row packs exactly as it would alone.
        let alone = PackedWeight::pack("row", QuantFormat::Nf4, xs, 1, d_in).unwrap();
        assert_eq!(alone.nf4_blocks().unwrap(), &blocks[row * 2..row * 2 + 2]);
        let row_max = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = xs
            .iter()
            .zip(&y[row * d_in..(row + 1) * d_in])
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= nf4_half_gap() * row_max * 1.000_001,
            "row {row}: {err}"
        );
    }
}

#[test]
fn q4k_packs_and_dequantises_bit_for_bit_like_tb_gguf() {
    let mut rng = StdRng::seed_from_u64(302);
    let (d_out, d_in) = (5, 512);
    let x = normalish(&mut rng, d_out * d_in, 0.03);
    let w = PackedWeight::pack("w", QuantFormat::Q4K, &x, d_out, d_in).unwrap();
    let want_blocks: Vec<BlockQ4K> = x.chunks_exact(256).map(BlockQ4K::quantize_block).collect();
    assert_eq!(w.q4k_blocks().unwrap(), want_blocks.as_slice());
    let bytes = codec::quantize_to_vec(GgmlType::Q4_K, &x).unwrap();
    let mut want = vec![0.0f32; x.len()];
    codec::dequantize(GgmlType::Q4_K, &bytes, &mut want).unwrap();
    let got = w.dequantize();
    assert!(
        got.iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "Q4_K dequantisation differs from tb-gguf's"
    );
    assert_eq!(w.packed_bytes(), bytes.len());
}

/// The tiled kernel's dequantisation (its fast path) against the scalar reference: the
/// forward of an identity input is `Wᵀ`, and each output is one product by 1.0, so exact.
#[test]
fn tiled_dequantisation_is_exactly_the_reference() {
    let mut rng = StdRng::seed_from_u64(303);
    for (format, d_out, d_in) in [(QuantFormat::Nf4, 70, 136), (QuantFormat::Q4K, 70, 256)] {
        let x = normalish(&mut rng, d_out * d_in, 0.1);
        let w = PackedWeight::pack("w", format, &x, d_out, d_in).unwrap();
        let eye = Tensor::<Flex, 2>::eye(d_in, &Default::default());
        let y = Flex::packed_linear_fwd(eye.into_primitive().tensor(), &w);
        let y: Tensor<Flex, 2> = Tensor::from_primitive(TensorPrimitive::Float(y));
        let got = y.transpose().into_data().into_vec::<f32>().unwrap();
        assert_eq!(got, w.dequantize(), "{format}");
    }
}

#[test]
fn bad_weights_are_errors_naming_the_tensor() {
    let name = "model.layers.3.mlp.down_proj.weight";
    let err = PackedWeight::pack(name, QuantFormat::Q4K, &vec![0.5; 2 * 320], 2, 320).unwrap_err();
    assert!(
        matches!(&err, FusedError::Pack { tensor, format: "Q4_K", .. } if tensor == name),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(name) && msg.contains("320") && msg.contains("256"),
        "{msg}"
    );
    // NF4 pads the same width.
    assert!(PackedWeight::pack(name, QuantFormat::Nf4, &vec![0.5; 2 * 320], 2, 320).is_ok());
    let mut x = vec![0.5; 2 * 64];
    x[70] = f32::NAN;
    let msg = PackedWeight::pack(name, QuantFormat::Nf4, &x, 2, 64)
        .unwrap_err()
        .to_string();
    assert!(msg.contains(name) && msg.contains("[1, 6]"), "{msg}");
    let msg = PackedWeight::pack(name, QuantFormat::Nf4, &x, 3, 64)
        .unwrap_err()
        .to_string();
    assert!(msg.contains(name) && msg.contains("[3, 64]"), "{msg}");
}
