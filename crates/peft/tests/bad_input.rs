//! Bad adapters, configs and merges: clear errors naming the file/field/tensor, nothing half
//! written.

mod common;

use std::path::Path;

use common::*;
use tb_peft::{merge_into_dir, Adapter, LoraConfig};

fn copy_adapter(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(fixtures().join("all-linear").join(f), to.join(f)).unwrap();
    }
}

fn edit_config(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join("adapter_config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v[key] = value;
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn write_tensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn unsupported_peft_values_are_named_errors() {
    for (key, value, expect) in [
        ("use_dora", serde_json::json!(true), "use_dora"),
        (
            "modules_to_save",
            serde_json::json!(["lm_head"]),
            "modules_to_save",
        ),
        (
            "init_lora_weights",
            serde_json::json!("pissa"),
            "init_lora_weights",
        ),
        ("peft_type", serde_json::json!("IA3"), "peft_type"),
        ("r", serde_json::json!("eight"), "`r`"),
        ("bias", serde_json::json!("all"), "bias"),
        (
            "something_new",
            serde_json::json!({"x": 1}),
            "something_new",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        copy_adapter(tmp.path());
        edit_config(tmp.path(), key, value);
        let err = LoraConfig::load(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains(expect) && err.contains("adapter_config.json"),
            "{key}: {err}"
        );
    }
}

#[test]
fn malformed_config_and_weights() {
    let tmp = tempfile::tempdir().unwrap();
    copy_adapter(tmp.path());
    std::fs::write(tmp.path().join("adapter_config.json"), "{\"r\": 4,").unwrap();
    let err = Adapter::load(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("not valid JSON"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    copy_adapter(tmp.path());
    let w = tmp.path().join("adapter_model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    let err = Adapter::load(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains("adapter_model.safetensors") && err.contains("safetensors"),
        "{err}"
    );

    // A lone lora_A, a DoRA magnitude, a rank that disagrees with the config.
    for (tensors, expect) in [
        (
            vec![(
                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                vec![4, 64],
                vec![0.0; 256],
            )],
            "no matching lora_B",
        ),
        (
            vec![(
                "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
                vec![64],
                vec![1.0; 64],
            )],
            "lora_magnitude_vector",
        ),
        (
            vec![
                (
                    "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                    vec![2, 64],
                    vec![0.0; 128],
                ),
                (
                    "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
                    vec![64, 2],
                    vec![0.0; 128],
                ),
            ],
            "rank 2 in the file but 4",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        copy_adapter(tmp.path());
        write_tensors(&tmp.path().join("adapter_model.safetensors"), &tensors);
        let err = Adapter::load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains(expect), "{expect}: {err}");
    }
}

#[test]
fn adapter_for_another_base_says_what_differs() {
    // An adapter whose q_proj was made for a 32-wide model, and one naming a layer that does
    // not exist.
    let tmp = tempfile::tempdir().unwrap();
    copy_adapter(tmp.path());
    edit_config(tmp.path(), "target_modules", serde_json::json!(["q_proj"]));
    write_tensors(
        &tmp.path().join("adapter_model.safetensors"),
        &[
            (
                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                vec![4, 32],
                vec![0.1; 128],
            ),
            (
                "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
                vec![32, 4],
                vec![0.1; 128],
            ),
            (
                "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight",
                vec![4, 64],
                vec![0.1; 256],
            ),
            (
                "base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight",
                vec![64, 4],
                vec![0.1; 256],
            ),
        ],
    );
    let out = tmp.path().join("merged");
    let err = merge_into_dir(&tiny_mistral(), tmp.path(), &out)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("32 inputs, but the base `model.layers.0.self_attn.q_proj` takes 64"),
        "{err}"
    );
    assert!(
        err.contains("model.layers.7.self_attn.q_proj` does not exist"),
        "{err}"
    );
    assert!(
        err.contains("targets `model.layers.1.self_attn.q_proj` but the file has no tensors"),
        "{err}"
    );
    assert!(!out.exists(), "a failed merge left output behind");
    // Applying it at inference fails the same way.
    let device = Default::default();
    let model = tb_model::ModelDir::open(tiny_mistral())
        .unwrap()
        .load::<tb_model::CpuBackend>(&device)
        .unwrap();
    let adapter = Adapter::load(tmp.path()).unwrap();
    assert!(adapter.apply(model, &device).is_err());
}

#[test]
fn non_finite_adapter_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    copy_adapter(tmp.path());
    let mut tensors = Vec::new();
    let st_bytes = std::fs::read(tmp.path().join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    for (name, v) in st.tensors() {
        let mut d: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if name.contains("layers.1.mlp.up_proj.lora_B") {
            d[3] = f32::NAN;
        }
        tensors.push((name, v.shape().to_vec(), d));
    }
    let refs: Vec<(&str, Vec<usize>, Vec<f32>)> = tensors
        .iter()
        .map(|(n, s, d)| (n.as_str(), s.clone(), d.clone()))
        .collect();
    write_tensors(&tmp.path().join("adapter_model.safetensors"), &refs);
    let out = tmp.path().join("merged");
    let err = merge_into_dir(&tiny_mistral(), tmp.path(), &out)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("non-finite") && err.contains("up_proj.lora_B"),
        "{err}"
    );
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".merge-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary merge folder left behind");
}

#[test]
fn merge_refuses_a_non_empty_output_and_a_gguf_base() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    let err = merge_into_dir(&tiny_mistral(), &fixtures().join("all-linear"), &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "x");
    let gguf = tmp.path().join("m.gguf");
    std::fs::write(&gguf, b"GGUF").unwrap();
    let err = merge_into_dir(
        &gguf,
        &fixtures().join("all-linear"),
        &tmp.path().join("o2"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("import-gguf"), "{err}");
}

#[test]
fn a_4bit_base_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(tmp.path());
    let runs = tmp.path().join("runs");
    for quant in ["nf4", "q4_k"] {
        let text = tiny_experiment(&model, &runs, "")
            .replace("[data]", &format!("base_quant = \"{quant}\"\n[data]"));
        let config = tb_train::ExperimentConfig::parse(&text).unwrap();
        let err = tb_peft::train_peft(&tb_peft::TrainRequest {
            config,
            resume: None,
            progress: false,
            gguf: vec![],
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("model.base_quant") && err.contains(quant) && err.contains("unsloth"),
            "{err}"
        );
        assert!(!runs.exists(), "{quant}: a run folder was created");
    }
    // GGUF export belongs to the separate merge/export steps of the PEFT workflow.
    let config = tb_train::ExperimentConfig::parse(&tiny_experiment(&model, &runs, "")).unwrap();
    let err = tb_peft::train_peft(&tb_peft::TrainRequest {
        config,
        resume: None,
        progress: false,
        gguf: vec!["q4_k_m".into()],
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("gguf") && err.contains("tunebench merge"),
        "{err}"
    );
    assert!(!runs.exists(), "a run folder was created");
}
