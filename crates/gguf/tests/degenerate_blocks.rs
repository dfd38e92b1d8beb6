//! Every codec against llama.cpp's `llama_model_quantize` on degenerate blocks: all zeros, a single
//! non-zero value, subnormal values (where `1/d` overflows to infinity in the reference
//! quantizers), tiny normal values whose fp16 scale flushes to zero, and large values whose fp16
//! scale overflows. The bytes must be the same, not only the values they decode to.

mod common;

use common::libllama::llama_quantize;
use common::TinyLlama;
use tb_gguf::{codec, GgmlType, GgufFile};

/// Overwrites whole rows of a 2-D weight with one degenerate pattern each (rows cycle through
/// the patterns; every fourth row keeps its random values so ordinary blocks sit beside them).
fn degenerate(row: usize, values: &mut [f32]) {
    let n = values.len();
    let wave = |i: usize| ((i * 37 % 23) as f32 - 11.0) / 11.0;
    match row % 12 {
        0 => values.fill(0.0),
        1 => values
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = 1e-39 * wave(i)),
        2 => values
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = 1e-44 * wave(i)),
        3 => values
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = 1e-30 * wave(i)),
        4 => {
            values.fill(0.0);
            values[n / 3] = 1e-39;
        }
        5 => {
            values.fill(0.0);
            values[n / 5] = -0.5;
        }
        6 => values
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = 3e4 * wave(i)),
        7 => values.fill(f32::MIN_POSITIVE),
        8 => values
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = -1e-38 * wave(i).abs()),
        _ => {}
    }
}

/// (llama_ftype id, name) of the file types whose tensors use our codecs.
const FTYPES: [(u32, &str); 8] = [
    (2, "Q4_0"),
    (3, "Q4_1"),
    (7, "Q8_0"),
    (8, "Q5_0"),
    (9, "Q5_1"),
    (14, "Q4_K_S"),
    (16, "Q5_K_S"),
    (18, "Q6_K"),
];

#[test]
fn every_codec_matches_llama_cpp_byte_for_byte_on_degenerate_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = TinyLlama {
        n_embd: 256,
        n_ff: 512,
        n_layer: 1,
        n_head: 4,
        n_head_kv: 2,
        n_vocab: 320,
        tied: false,
        weight_type: GgmlType::F32,
        seed: 11,
    };
    let mut tensors = model.tensors();
    for (_, _, ne, values) in tensors.iter_mut() {
        if ne.len() == 2 {
            let cols = ne[0] as usize;
            for (r, row) in values.chunks_mut(cols).enumerate() {
                degenerate(r, row);
            }
        }
    }
    let src = dir.path().join("degenerate-f32.gguf");
    model.write_tensors(&src, &tensors);
    let mut failures = Vec::new();
    let mut checked = std::collections::BTreeMap::<GgmlType, usize>::new();
    for (ftype, name) in FTYPES {
        let out = dir.path().join(format!("theirs-{name}.gguf"));
        llama_quantize(&src, &out, ftype, 2);
        let theirs = GgufFile::open(&out).expect("read llama.cpp's file");
        for (tensor, _, _, values) in &tensors {
            let info = theirs
                .tensors()
                .iter()
                .find(|t| &t.name == tensor)
                .expect("tensor in llama.cpp's file");
            if matches!(info.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
                continue;
            }
            let want = theirs.tensor_data(tensor).expect("their data");
            let ours = codec::quantize_to_vec(info.ty, values).expect("our codec");
            let size = info.ty.type_size();
            let bad: Vec<usize> = ours
                .chunks(size)
                .zip(want.chunks(size))
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .map(|(i, _)| i)
                .collect();
            *checked.entry(info.ty).or_default() += want.len() / size;
            if !bad.is_empty() {
                let per_row = info.ne[0] as usize / info.ty.block_size();
                let rows: std::collections::BTreeSet<usize> =
                    bad.iter().map(|b| b / per_row % 12).collect();
                failures.push(format!(
                    "{name}: {tensor} ({}): {} of {} blocks differ; row patterns {rows:?}; first block {}: ours {:02x?} theirs {:02x?}",
                    info.ty,
                    bad.len(),
                    want.len() / size,
                    bad[0],
                    &ours[bad[0] * size..(bad[0] + 1) * size],
                    &want[bad[0] * size..(bad[0] + 1) * size],
                ));
            }
        }
    }
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ] {
        assert!(
            checked.get(&ty).copied().unwrap_or(0) > 0,
            "no {ty} tensor was compared: {checked:?}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
