//! Editable copies of the committed test fixtures.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Rewrites a JSON file through `edit` (pretty-printed).
pub fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// A copy of tb-model's tiny-mistral fixture (config.json, the fixture tokenizer and an f32
/// `model.safetensors`) in `dst`, keeping the tensors for which `edit` returns true after it
/// may have changed their values.
pub fn tiny_mistral_dir(dst: &Path, edit: impl Fn(&str, &mut Vec<f32>) -> bool) -> PathBuf {
    let fixtures = crate::repo_root().join("crates/model/tests/fixtures");
    std::fs::create_dir_all(dst).unwrap();
    let src = fixtures.join("tiny-mistral");
    std::fs::copy(src.join("config.json"), dst.join("config.json")).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixtures.join("tokenizer").join(f), dst.join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut kept: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let mut v: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if edit(&name, &mut v) {
            let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            kept.push((name, view.shape().to_vec(), data));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = kept
        .iter()
        .map(|(n, s, d)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d);
            (n.clone(), view.unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dst.join("model.safetensors")).unwrap();
    dst.to_path_buf()
}
