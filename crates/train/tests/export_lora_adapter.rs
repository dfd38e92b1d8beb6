//! `export_lora_adapter`: bad adapters are refused with a clear error naming the problem and
//! leave no file; an adapter with per-module ranks and alphas (`rank_pattern`,
//! `alpha_pattern`) exports, and llama.cpp's reading of the file (`alpha / r` per pair, r from
//! each B) applies exactly the `scale · B · A` that the merge step adds.

use std::path::{Path, PathBuf};

use serde_json::json;
use tb_gguf::LoraTensorType;
use tb_testkit::{edit_json, tiny_mistral_dir};
use tb_train::lora::{save_adapter, Adapter};
use tb_train::merge::delta_weight;
use tb_train::{export_lora_adapter, merge_into_dir, NamedTensor};

fn gguf_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gguf/tests/fixtures")
}

#[test]
fn lora_refuses_dora_unknown_tensors_and_missing_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_mistral_dir(&tmp.path().join("base"), |_, _| true);
    let src = gguf_fixtures().join("peft-tiny-mistral/adapter");
    let adapter = tmp.path().join("adapter");
    std::fs::create_dir_all(&adapter).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(src.join(f), adapter.join(f)).unwrap();
    }
    let out = tmp.path().join("a.gguf");
    export_lora_adapter(&adapter, &base, &out, LoraTensorType::F16).unwrap();
    std::fs::remove_file(&out).unwrap();

    edit_json(&adapter.join("adapter_config.json"), |c| {
        c["use_dora"] = json!(true)
    });
    let e = export_lora_adapter(&adapter, &base, &out, LoraTensorType::F16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("DoRA"), "{e}");
    edit_json(&adapter.join("adapter_config.json"), |c| {
        c["use_dora"] = json!(false)
    });

    // a base without layer 1: the adapter targets tensors it does not have
    let small = tiny_mistral_dir(&tmp.path().join("small"), |n, _| {
        !n.starts_with("model.layers.1.")
    });
    edit_json(&small.join("config.json"), |c| {
        c["num_hidden_layers"] = json!(1)
    });
    let e = export_lora_adapter(&adapter, &small, &out, LoraTensorType::F16)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.layers.1.") && e.contains("another base model"),
        "{e}"
    );
    assert!(!out.exists());
}

/// The fixture adapter rewritten with rank 2 for `q_proj` (`rank_pattern`), alpha 16 for
/// `v_proj` (`alpha_pattern`) and `use_rslora` as given.
fn patterned_adapter(dst: &Path, rslora: bool) -> Adapter {
    let mut adapter = Adapter::load(gguf_fixtures().join("peft-tiny-mistral/adapter")).unwrap();
    let mut config = adapter.config.clone();
    config.rank_pattern.insert("q_proj".into(), 2);
    config.alpha_pattern.insert("v_proj".into(), 16.0);
    config.use_rslora = rslora;
    let mut tensors: Vec<NamedTensor> = Vec::new();
    for (module, m) in &mut adapter.modules {
        if module.ends_with("q_proj") {
            let (r, d_in, d_out) = (m.a.shape[0], m.a.shape[1], m.b.shape[0]);
            m.a.data.truncate(2 * d_in);
            m.a.shape = vec![2, d_in];
            m.b.data = (0..d_out)
                .flat_map(|o| m.b.data[o * r..o * r + 2].to_vec())
                .collect();
            m.b.shape = vec![d_out, 2];
        }
        tensors.push(m.a.clone());
        tensors.push(m.b.clone());
    }
    save_adapter(dst, &config, &tensors).unwrap();
    Adapter::load(dst).unwrap()
}

#[test]
fn rank_and_alpha_patterns_export_as_merge_applies_them() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_mistral_dir(&tmp.path().join("base"), |_, _| true);
    for (rslora, want_rescaled) in [(false, 2), (true, 4)] {
        let dir = tmp.path().join(format!("adapter-{rslora}"));
        let adapter = patterned_adapter(&dir, rslora);
        // it merges ...
        let merged = tmp.path().join(format!("merged-{rslora}"));
        merge_into_dir(&base, &dir, &merged).unwrap();
        // ... so it exports
        let out = tmp.path().join(format!("a-{rslora}.gguf"));
        let report = export_lora_adapter(&dir, &base, &out, LoraTensorType::F32).unwrap();
        assert_eq!(report.targets, 14);
        assert_eq!(report.rescaled, want_rescaled, "rslora {rslora}");
        let f = tb_gguf::GgufFile::open(&out).unwrap();
        let alpha = f.metadata().get_f32("adapter.lora.alpha").unwrap();
        assert_eq!(alpha, report.gguf_alpha);
        let mut ranks = std::collections::BTreeSet::new();
        for (module, m) in &adapter.modules {
            let gguf = tb_gguf::hf_to_gguf_name(&format!("{module}.weight")).unwrap();
            let (a_name, b_name) = (format!("{gguf}.lora_a"), format!("{gguf}.lora_b"));
            let rank = f.tensor(&b_name).unwrap().ne[0] as usize;
            ranks.insert(rank);
            let a = f.tensor_f32(&a_name).unwrap();
            let mut b = f.tensor_f32(&b_name).unwrap();
            let heads = match () {
                _ if module.ends_with("q_proj") => Some(4),
                _ if module.ends_with("k_proj") => Some(2),
                _ => None,
            };
            if let Some(h) = heads {
                b = tb_gguf::unpermute_qk(&b, m.b.shape[0], rank, h).unwrap();
            }
            let from_gguf = tb_train::lora::ModuleAdapter {
                a: NamedTensor {
                    name: a_name,
                    shape: vec![rank, m.a.shape[1]],
                    data: a,
                },
                b: NamedTensor {
                    name: b_name,
                    shape: vec![m.b.shape[0], rank],
                    data: b,
                },
            };
            // llama.cpp: alpha / r with r = lora_b.ne[0]
            let llama_cpp = delta_weight(&from_gguf, alpha / rank as f32);
            let merge = delta_weight(m, adapter.config.scale_for(module) as f32);
            let scale = merge.iter().fold(0f32, |s, x| s.max(x.abs()));
            let worst = llama_cpp
                .iter()
                .zip(&merge)
                .fold(0f32, |w, (x, y)| w.max((x - y).abs()));
            assert!(
                worst <= 1e-5 * scale.max(1e-6),
                "{module} (rslora {rslora}): delta differs by {worst} (max {scale})"
            );
        }
        assert_eq!(ranks.into_iter().collect::<Vec<_>>(), vec![2, 4]);
    }
}

/// A per-module alpha large enough that `v_proj`'s B, with the ratio to `alpha / r` folded in,
/// leaves f16's range (±65504) but not f32's: F16 refuses it naming the tensor and writes
/// nothing; F32 writes it.
#[test]
fn folded_scale_beyond_f16_is_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_mistral_dir(&tmp.path().join("base"), |_, _| true);
    let fixture = Adapter::load(gguf_fixtures().join("peft-tiny-mistral/adapter")).unwrap();
    let mut config = fixture.config.clone();
    config.alpha_pattern.insert("v_proj".into(), 1e12);
    let tensors: Vec<NamedTensor> = fixture
        .modules
        .values()
        .flat_map(|m| [m.a.clone(), m.b.clone()])
        .collect();
    let dir = tmp.path().join("adapter");
    save_adapter(&dir, &config, &tensors).unwrap();
    let out = tmp.path().join("a.gguf");
    let e = export_lora_adapter(&dir, &base, &out, LoraTensorType::F16)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("v_proj.lora_B") && e.contains("does not fit f16"),
        "{e}"
    );
    assert!(!out.exists());
    let report = export_lora_adapter(&dir, &base, &out, LoraTensorType::F32).unwrap();
    assert!(report.rescaled > 0);
    assert!(out.exists());
}
