//! Every loader rejects bad input with an error naming the file/field/tensor, never a panic.

use std::path::{Path, PathBuf};

use tb_model::{CpuBackend, ModelConfig, ModelDir, TextTokenizer};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn load_err(dir: &Path) -> String {
    match ModelDir::open(dir).and_then(|d| d.load::<CpuBackend>(&Default::default())) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_safetensors_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-mistral"), tmp.path());
    let file = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    for cut in [0, 4, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&file, &bytes[..cut]).unwrap();
        let e = load_err(tmp.path());
        assert!(e.contains("model.safetensors"), "cut {cut}: {e}");
    }
}

#[test]
fn missing_extra_and_misshaped_tensors_are_named() {
    use tb_model::checkpoint::{decode_f32, encode_f32, StoredDtype};
    use tb_model::checkpoint_writer::{write_safetensors, OwnedTensor};
    let src = tb_model::SafetensorsCheckpoint::open(fixture("tiny-mistral")).unwrap();
    let all: Vec<OwnedTensor> = src
        .names()
        .map(|n| {
            let shape = src.shape(n).unwrap();
            OwnedTensor {
                name: n.to_owned(),
                dtype: StoredDtype::F32,
                bytes: encode_f32(
                    &decode_f32(src.raw(n).unwrap(), src.dtype(n).unwrap()),
                    StoredDtype::F32,
                ),
                shape,
            }
        })
        .collect();
    let write = |tensors: Vec<OwnedTensor>| {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::copy(
            fixture("tiny-mistral/config.json"),
            tmp.path().join("config.json"),
        )
        .unwrap();
        write_safetensors(&tmp.path().join("model.safetensors"), &tensors).unwrap();
        tmp
    };
    let victim = "model.layers.1.mlp.up_proj.weight";

    let missing = write(
        all.iter()
            .filter(|t| t.name != victim)
            .map(clone_tensor)
            .collect(),
    );
    let e = load_err(missing.path());
    assert!(e.contains(victim) && e.contains("missing"), "{e}");

    let mut extra: Vec<OwnedTensor> = all.iter().map(clone_tensor).collect();
    extra.push(OwnedTensor {
        name: "model.layers.9.foo.weight".into(),
        dtype: StoredDtype::F32,
        shape: vec![1],
        bytes: vec![0; 4],
    });
    let e = load_err(write(extra).path());
    assert!(e.contains("model.layers.9.foo.weight"), "{e}");

    let mut bad: Vec<OwnedTensor> = all.iter().map(clone_tensor).collect();
    let t = bad.iter_mut().find(|t| t.name == victim).unwrap();
    t.shape = vec![t.shape[1], t.shape[0]];
    let e = load_err(write(bad).path());
    assert!(e.contains(victim) && e.contains("shape"), "{e}");
}

fn clone_tensor(
    t: &tb_model::checkpoint_writer::OwnedTensor,
) -> tb_model::checkpoint_writer::OwnedTensor {
    tb_model::checkpoint_writer::OwnedTensor {
        name: t.name.clone(),
        dtype: t.dtype,
        shape: t.shape.clone(),
        bytes: t.bytes.clone(),
    }
}

#[test]
fn wrong_dtype_is_named() {
    // Rewrite the header of one tensor to I32 (same byte size as F32).
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-mistral"), tmp.path());
    let file = tmp.path().join("model.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    let patched = header.replacen("\"F32\"", "\"I32\"", 1);
    assert_eq!(patched.len(), header.len());
    bytes[8..8 + n].copy_from_slice(patched.as_bytes());
    std::fs::write(&file, bytes).unwrap();
    let e = load_err(tmp.path());
    assert!(e.contains("unsupported dtype I32"), "{e}");
}

#[test]
fn sharded_index_problems_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-llama"), tmp.path());
    std::fs::remove_file(tmp.path().join("model-00002-of-00004.safetensors")).unwrap();
    let e = load_err(tmp.path());
    assert!(e.contains("model-00002-of-00004.safetensors"), "{e}");

    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-llama"), tmp.path());
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        "{\"weight_map\": 3}",
    )
    .unwrap();
    let e = load_err(tmp.path());
    assert!(e.contains("weight_map"), "{e}");
}

#[test]
fn bad_config_json_is_an_error_with_position() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-mistral"), tmp.path());
    std::fs::write(tmp.path().join("config.json"), "{\"hidden_size\": 64,").unwrap();
    let e = load_err(tmp.path());
    assert!(e.contains("config.json") && e.contains("line 1"), "{e}");

    let mut v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny-mistral/config.json")).unwrap(),
    )
    .unwrap();
    v["architectures"] = serde_json::json!(["Qwen2ForCausalLM"]);
    let e = ModelConfig::from_hf_json(&v, "config.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("architectures") && e.contains("Qwen2ForCausalLM"),
        "{e}"
    );
}

#[test]
fn tokenizer_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let e = TextTokenizer::from_dir(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
    copy_dir(&fixture("tokenizer"), tmp.path());
    std::fs::write(tmp.path().join("tokenizer.json"), "{not json").unwrap();
    let e = TextTokenizer::from_dir(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
    copy_dir(&fixture("tokenizer"), tmp.path());
    std::fs::write(
        tmp.path().join("tokenizer_config.json"),
        "{\"bos_token\": \"<nope>\"}",
    )
    .unwrap();
    let e = TextTokenizer::from_dir(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("<nope>"), "{e}");
}
