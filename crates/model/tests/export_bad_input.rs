//! Bad input to the HF → GGUF exporter: each case is a clear error that names the problem
//! (tensor, key, architecture, pre-tokenizer), and no output file (nor a temporary one) is left
//! behind. Also what the exporter accepts that the Burn model refuses (RoPE scaling).

use std::path::Path;

use serde_json::json;
use tb_gguf::{ExportOptions, QuantMix};
use tb_model::gguf_export::export_hf_dir;
use tb_testkit::{edit_json, tiny_mistral_dir};

/// Exports `dir` into an empty folder and returns the error text; checks nothing was left.
fn fails(dir: &Path) -> String {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.gguf");
    let opts = ExportOptions {
        mix: QuantMix::Q8_0,
        threads: 1,
    };
    let err = export_hf_dir(dir, &out, opts).expect_err("export must fail");
    let left: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    err.to_string()
}

#[test]
fn the_unmodified_copy_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_mistral_dir(&tmp.path().join("m"), |_, _| true);
    let out = tmp.path().join("ok.gguf");
    let opts = ExportOptions {
        mix: QuantMix::Q4_K_M,
        threads: 1,
    };
    let r = export_hf_dir(&dir, &out, opts).unwrap();
    assert_eq!(r.tensors.len(), 21);
    assert_eq!(r.tokenizer_pre, "gpt-2");
    assert!(out.is_file());
}

#[test]
fn missing_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_mistral_dir(tmp.path(), |n, _| n != "model.layers.1.mlp.up_proj.weight");
    let e = fails(&dir);
    assert!(
        e.contains("missing tensor `model.layers.1.mlp.up_proj.weight`"),
        "{e}"
    );
}

#[test]
fn nan_and_inf_weights_are_named() {
    for bad in [f32::NAN, f32::INFINITY] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tiny_mistral_dir(tmp.path(), |n, v| {
            if n == "model.layers.0.self_attn.k_proj.weight" {
                v[77] = bad;
            }
            true
        });
        let e = fails(&dir);
        assert!(
            e.contains("model.layers.0.self_attn.k_proj.weight")
                && e.contains("blk.0.attn_k.weight")
                && e.contains("non-finite")
                && e.contains("index 77"),
            "{e}"
        );
    }
}

#[test]
fn unknown_architecture_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_mistral_dir(tmp.path(), |_, _| true);
    edit_json(&dir.join("config.json"), |c| {
        c["architectures"] = json!(["GPT2LMHeadModel"])
    });
    let e = fails(&dir);
    assert!(
        e.contains("unsupported architecture `GPT2LMHeadModel`") && e.contains("LlamaForCausalLM"),
        "{e}"
    );
}

#[test]
fn unsupported_pre_tokenizer_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_mistral_dir(tmp.path(), |_, _| true);
    edit_json(&dir.join("tokenizer.json"), |t| {
        t["pre_tokenizer"] = json!({"type": "Whitespace"})
    });
    let e = fails(&dir);
    assert!(
        e.contains("unsupported BPE pre-tokenizer") && e.contains("Whitespace"),
        "{e}"
    );
}

#[test]
fn shape_that_contradicts_config_and_missing_tokenizer_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_mistral_dir(tmp.path(), |_, _| true);
    edit_json(&dir.join("config.json"), |c| {
        c["intermediate_size"] = json!(96)
    });
    let e = fails(&dir);
    assert!(
        e.contains("has shape") && e.contains("config.json implies"),
        "{e}"
    );
    edit_json(&dir.join("config.json"), |c| {
        c["intermediate_size"] = json!(128)
    });
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let e = fails(&dir);
    assert!(e.contains("no tokenizer.json or tokenizer.model"), "{e}");
    let e = fails(&tmp.path().join("nope"));
    assert!(e.contains("config.json is missing"), "{e}");
}

/// config.json's linear and llama3 RoPE scaling: the GGUF carries them (llama.rope.scaling.*
/// keys; the rope_freqs.weight tensor), while building the Burn model from the same folder is
/// refused with an error naming config.json and the field.
#[test]
fn rope_scaling_exports_but_the_model_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_mistral_dir(&tmp.path().join("linear"), |_, _| true);
    edit_json(
        &dir.join("config.json"),
        |c| {
            c["rope_parameters"] =
                json!({"rope_theta": 10000.0, "rope_type": "linear", "factor": 4.0})
        },
    );
    let out = tmp.path().join("linear.gguf");
    let opts = ExportOptions {
        mix: QuantMix::F32,
        threads: 1,
    };
    export_hf_dir(&dir, &out, opts).unwrap();
    let f = tb_gguf::GgufFile::open(&out).unwrap();
    assert_eq!(
        f.metadata().get_str("llama.rope.scaling.type").unwrap(),
        "linear"
    );
    assert_eq!(
        f.metadata().get_f32("llama.rope.scaling.factor").unwrap(),
        4.0
    );
    let model = tb_model::ModelDir::open(&dir).unwrap();
    let Err(e) = model.load::<tb_model::CpuBackend>(&Default::default()) else {
        panic!("the Burn model has no linear RoPE scaling");
    };
    let e = e.to_string();
    assert!(
        e.contains("config.json") && e.contains("`rope_scaling`") && e.contains("`linear`"),
        "{e}"
    );

    let dir = tiny_mistral_dir(&tmp.path().join("llama3"), |_, _| true);
    edit_json(
        &dir.join("config.json"),
        |c| {
            c["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 16})
        },
    );
    let out = tmp.path().join("llama3.gguf");
    export_hf_dir(&dir, &out, opts).unwrap();
    let freqs = tb_gguf::GgufFile::open(&out)
        .unwrap()
        .tensor_f32("rope_freqs.weight")
        .unwrap();
    assert_eq!(freqs.len(), 8);
    assert_eq!(freqs[7], 8.0);
    let Err(e) = tb_model::LoadedModel::<tb_model::CpuBackend>::load(&dir, &Default::default())
    else {
        panic!("the Burn model has no llama3 RoPE scaling");
    };
    let e = e.to_string();
    assert!(
        e.contains("`rope_scaling`") && e.contains("`llama3`"),
        "{e}"
    );

    // a scaling neither side knows is refused when config.json is read, naming the field
    edit_json(&dir.join("config.json"), |c| {
        c["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0})
    });
    let e = fails(&dir);
    assert!(e.contains("`rope_scaling`") && e.contains("`yarn`"), "{e}");
}
