//! `tunebench export lora-gguf` against PEFT and llama.cpp: the committed PEFT adapters on
//! tiny-mistral (r=4, alpha=8, all 7 projections, non-zero B; one with rsLoRA) are exported as
//! F16 (the default) and F32, and llama.cpp (node-llama-cpp, `createContext({lora})`) on our F32
//! base export + the adapter GGUF reproduces PEFT's reference: the same greedy continuation and,
//! at every position, the same top-8 tokens (F16: up to a near-tie at the 8th place) with
//! log-probabilities (relative to the top token) within 2e-3 for F32 and [`F16_TOLERANCE`] for
//! F16. The tensor types and `general.file_type` are the ones asked for, and gguf-py reads the
//! files; an unknown `--outtype` is a usage error.
//!
//! node-llama-cpp reports next-token probabilities after its default sampler chain (top-k
//! renormalised), so absolute probabilities are not comparable; differences of log-probabilities
//! between candidates are (renormalisation cancels out).

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value as Json};

/// Largest |Δ relative log-probability| accepted for the F16 adapter: the F32 tolerance (2e-3)
/// plus what rounding A and B to f16 (11 significant bits) moves. Measured on these fixtures
/// with node-llama-cpp 3.21.1: the F16 adapter against the F32 one in llama.cpp at most 1.2e-3;
/// against PEFT, F16 at most 9.8e-4 (F32: 1.2e-3). F16 also swapped PEFT's 8th candidate with a
/// 9th lying 3.3e-4 from it, hence the boundary check below.
const F16_TOLERANCE: f64 = 3e-3;

/// `tunebench export lora-gguf` of a committed adapter, `--outtype` when given.
fn export_adapter(
    adapter: &Path,
    base: &Path,
    out: &Path,
    outtype: Option<&str>,
) -> (bool, String) {
    let mut args = vec![
        "export",
        "lora-gguf",
        "--adapter",
        adapter.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(t) = outtype {
        args.extend(["--outtype", t]);
    }
    let (ok, _, err) = tunebench(&args);
    (ok, err)
}

fn reference() -> Json {
    let p = gguf_fixtures().join("peft-tiny-mistral/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// llama.cpp's top-8 against PEFT's, over every scored position.
struct Comparison {
    /// Max |Δ(logp_i - logp_top)| over the candidates in both top-8 lists (matched by id).
    worst: f64,
    /// Whether both lists hold the same ids in the same order at every position.
    same_ids: bool,
    /// Whether the top token agrees at every position.
    same_top: bool,
    /// How far a candidate in only one of the two lists lies above the other list's 8th
    /// (relative log-probabilities; 0 when the lists hold the same ids): a near-tie at the cut
    /// keeps this within the value tolerance.
    boundary: f64,
}

/// (id, log-probability relative to the top candidate) of one position's top-8.
fn relative(ids: impl Iterator<Item = u64>, logps: impl Iterator<Item = f64>) -> Vec<(u64, f64)> {
    let v: Vec<(u64, f64)> = ids.zip(logps).collect();
    let top = v[0].1;
    v.into_iter().map(|(id, l)| (id, l - top)).collect()
}

fn compare(rows: &Json, want: &Json) -> Comparison {
    let mut c = Comparison {
        worst: 0.0,
        same_ids: true,
        same_top: true,
        boundary: 0.0,
    };
    let numbers = |v: &Json| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    for (pos, row) in rows.as_array().unwrap().iter().enumerate() {
        let row = row.as_array().unwrap();
        let got = relative(
            row.iter().map(|e| e[0].as_u64().unwrap()),
            row.iter().map(|e| e[1].as_f64().unwrap().ln()),
        );
        let ids = numbers(&want["top_ids"][pos]);
        let peft = relative(
            ids.iter().map(|&x| x as u64),
            numbers(&want["top_logprobs"][pos]).into_iter(),
        );
        c.same_top &= got[0].0 == peft[0].0;
        c.same_ids &= got.iter().map(|e| e.0).eq(peft.iter().map(|e| e.0));
        for (mine, other) in [(&got, &peft), (&peft, &got)] {
            let last = other.last().unwrap().1;
            for (id, l) in mine {
                match other.iter().find(|e| e.0 == *id) {
                    Some((_, o)) => c.worst = c.worst.max((l - o).abs()),
                    None => c.boundary = c.boundary.max(l - last),
                }
            }
        }
    }
    c
}

#[test]
fn peft_adapters_in_llama_cpp_match_peft() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_hf_dir("tiny-mistral", &tmp.path().join("tiny-mistral"), true);
    let base_gguf = tmp.path().join("base-f32.gguf");
    export(&base, "f32", &base_gguf);
    let r = reference();
    let input = ids(&r["input_ids"]);
    let plen = r["prompt_len"].as_u64().unwrap() as usize;
    // the base alone reproduces PEFT's base reference
    let out = llama_eval(
        &base_gguf,
        &json!({"prompts": [&input[..plen]], "max_tokens": 10, "score": [&input], "topk": 8}),
    );
    assert_eq!(ids(&out["continuations"][0]), ids(&r["base"]["greedy"]));
    for (name, outtype) in [
        ("adapter", None),
        ("adapter", Some("f32")),
        ("adapter-rslora", None),
        ("adapter-rslora", Some("f32")),
    ] {
        let adapter = gguf_fixtures().join("peft-tiny-mistral").join(name);
        let label = format!("{name} {}", outtype.unwrap_or("default"));
        let gguf = tmp
            .path()
            .join(format!("{name}-{}.gguf", outtype.unwrap_or("default")));
        let (ok, err) = export_adapter(&adapter, &base, &gguf, outtype);
        assert!(ok, "{err}");
        let f = tb_gguf::GgufFile::open(&gguf).unwrap();
        let md = f.metadata();
        assert_eq!(md.get_str("general.type").unwrap(), "adapter");
        assert_eq!(md.get_str("adapter.type").unwrap(), "lora");
        let alpha = md.get_f32("adapter.lora.alpha").unwrap();
        let want_alpha = if name == "adapter" { 8.0 } else { 16.0 }; // 8 * sqrt(4)
        assert_eq!(alpha, want_alpha, "{label}");
        // the default is F16 (MOSTLY_F16 = 1), f32 gives ALL_F32 = 0
        let (want_ty, want_ftype) = match outtype {
            None => (tb_gguf::GgmlType::F16, 1),
            _ => (tb_gguf::GgmlType::F32, 0),
        };
        assert_eq!(
            md.get_u32("general.file_type").unwrap(),
            want_ftype,
            "{label}"
        );
        assert_eq!(f.tensors().len(), 2 * 7 * 2);
        for t in f.tensors() {
            assert_eq!(t.ty, want_ty, "{label}: {}", t.name);
        }
        assert_eq!(f.tensor("blk.0.attn_q.weight.lora_a").unwrap().ne, [64, 4]);
        assert_eq!(f.tensor("blk.0.attn_k.weight.lora_b").unwrap().ne, [4, 32]);
        assert_eq!(
            f.tensor("blk.1.ffn_down.weight.lora_a").unwrap().ne,
            [128, 4]
        );
        check_with_gguf_py(&gguf);

        let out = llama_eval(
            &base_gguf,
            &json!({"prompts": [&input[..plen]], "max_tokens": 10, "score": [&input], "topk": 8,
                    "lora": gguf}),
        );
        let want = &r[name];
        assert_eq!(
            ids(&out["continuations"][0]),
            ids(&want["greedy"]),
            "{label}: greedy"
        );
        assert_ne!(
            ids(&want["greedy"]),
            ids(&r["base"]["greedy"]),
            "the adapter must matter"
        );
        let c = compare(&out["scores"][0], want);
        eprintln!(
            "{label}: llama.cpp base+adapter vs PEFT: greedy identical, top-8 ids identical: {}, \
             max |Δ relative logprob| = {:.2e}, boundary {:.2e}",
            c.same_ids, c.worst, c.boundary
        );
        assert!(c.same_top, "{label}: the top token differs from PEFT's");
        if outtype.is_none() {
            // F16 may swap a near-tie at the 8th place; it must then be a tie within tolerance
            assert!(
                c.boundary < F16_TOLERANCE,
                "{label}: a top-8 candidate is {} above the other list's 8th",
                c.boundary
            );
            assert!(
                c.worst < F16_TOLERANCE,
                "{label}: log-probabilities differ by {}",
                c.worst
            );
        } else {
            assert!(c.same_ids, "{label}: top-8 tokens differ from PEFT");
            assert!(
                c.worst < 2e-3,
                "{label}: log-probabilities differ by {}",
                c.worst
            );
        }
    }
}

#[test]
fn unknown_outtype_is_a_usage_error_without_output() {
    let tmp = tempfile::tempdir().unwrap();
    let adapter = gguf_fixtures().join("peft-tiny-mistral/adapter");
    let out = tmp.path().join("a.gguf");
    // checked by the argument parser, before the base is even looked at
    let (ok, err) = export_adapter(&adapter, &tmp.path().join("no-base"), &out, Some("q8_0"));
    assert!(!ok);
    assert!(
        err.contains("invalid value 'q8_0' for '--outtype") && err.contains("f32, f16, bf16"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn adapter_for_another_base_is_refused_without_output() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_hf_dir("tiny-mistral", &tmp.path().join("other"), true);
    // a base with a different MLP width: same names, other shapes
    let cfg = base.join("config.json");
    edit_json(&cfg, |c| c["intermediate_size"] = json!(96));
    let st = base.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    let orig = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (n, v) in orig.tensors() {
        let mut shape = v.shape().to_vec();
        let mut data = v.data().to_vec();
        if n.contains("mlp.") {
            let (rows, cols) = (shape[0], shape[1]);
            if n.contains("down_proj") {
                shape[1] = 96;
                data = data
                    .chunks(cols * 4)
                    .flat_map(|r| r[..96 * 4].to_vec())
                    .collect();
            } else {
                shape[0] = 96;
                data.truncate(96 * cols * 4);
                let _ = rows;
            }
        }
        tensors.push((n, shape, data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &st).unwrap();
    let out = tmp.path().join("a.gguf");
    let adapter = gguf_fixtures().join("peft-tiny-mistral/adapter");
    let (ok, err) = export_adapter(&adapter, &base, &out, None);
    assert!(!ok);
    assert!(
        err.contains("gate_proj") || err.contains("up_proj") || err.contains("down_proj"),
        "{err}"
    );
    assert!(err.contains("another base"), "{err}");
    assert!(!out.exists());
}
