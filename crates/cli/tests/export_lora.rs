//! `tunebench export lora-gguf` against PEFT and llama.cpp: the committed PEFT adapters on
//! tiny-mistral (r=4, alpha=8, all 7 projections, non-zero B; one with rsLoRA) are exported, and
//! llama.cpp (node-llama-cpp, `createContext({lora})`) on our F32 base export + the adapter GGUF
//! reproduces PEFT's reference: the same greedy continuation and, at every position, the same
//! top-8 tokens with log-probabilities (relative to the top token) within 2e-3.
//!
//! node-llama-cpp reports next-token probabilities after its default sampler chain (top-k
//! renormalised), so absolute probabilities are not comparable; differences of log-probabilities
//! between candidates are (renormalisation cancels out).

mod common;

use common::*;
use serde_json::{json, Value as Json};

fn reference() -> Json {
    let p = gguf_fixtures().join("peft-tiny-mistral/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Max |Δ(logp_i - logp_top)| over the top-8 of every position, and whether the top-8 ids agree.
fn compare(rows: &Json, want: &Json) -> (f64, bool) {
    let mut worst = 0.0f64;
    let mut same_ids = true;
    for (pos, row) in rows.as_array().unwrap().iter().enumerate() {
        let got: Vec<(u64, f64)> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e[0].as_u64().unwrap(), e[1].as_f64().unwrap().ln()))
            .collect();
        let ids: Vec<u64> = want["top_ids"][pos]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        let lp: Vec<f64> = want["top_logprobs"][pos]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        same_ids &= got[0].0 == ids[0];
        for (k, (id, l)) in got.iter().enumerate() {
            if *id != ids[k] {
                same_ids = false;
                continue;
            }
            worst = worst.max(((l - got[0].1) - (lp[k] - lp[0])).abs());
        }
    }
    (worst, same_ids)
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
    for name in ["adapter", "adapter-rslora"] {
        let adapter = gguf_fixtures().join("peft-tiny-mistral").join(name);
        let gguf = tmp.path().join(format!("{name}.gguf"));
        let (ok, _, err) = tunebench(&[
            "export",
            "lora-gguf",
            "--adapter",
            adapter.to_str().unwrap(),
            "--base",
            base.to_str().unwrap(),
            "--out",
            gguf.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        let f = tb_gguf::GgufFile::open(&gguf).unwrap();
        let md = f.metadata();
        assert_eq!(md.get_str("general.type").unwrap(), "adapter");
        assert_eq!(md.get_str("adapter.type").unwrap(), "lora");
        let alpha = md.get_f32("adapter.lora.alpha").unwrap();
        let want_alpha = if name == "adapter" { 8.0 } else { 16.0 }; // 8 * sqrt(4)
        assert_eq!(alpha, want_alpha, "{name}");
        assert_eq!(f.tensors().len(), 2 * 7 * 2);
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
            "{name}: greedy"
        );
        assert_ne!(
            ids(&want["greedy"]),
            ids(&r["base"]["greedy"]),
            "the adapter must matter"
        );
        let (worst, same_ids) = compare(&out["scores"][0], want);
        eprintln!("{name}: llama.cpp base+adapter vs PEFT: greedy identical, top-8 ids identical: {same_ids}, max |Δ relative logprob| = {worst:.2e}");
        assert!(same_ids, "{name}: top-8 tokens differ from PEFT");
        assert!(worst < 2e-3, "{name}: log-probabilities differ by {worst}");
    }
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
    let (ok, _, err) = tunebench(&[
        "export",
        "lora-gguf",
        "--adapter",
        adapter.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("gate_proj") || err.contains("up_proj") || err.contains("down_proj"),
        "{err}"
    );
    assert!(err.contains("another base"), "{err}");
    assert!(!out.exists());
}
