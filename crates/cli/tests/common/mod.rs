//! Shared helpers of the export tests: fixture directories, llama.cpp (node-llama-cpp) and
//! gguf-py oracles, tb-model references. Oracles are provisioned on first use and fail loudly.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `crates/model/tests/fixtures`.
pub fn model_fixtures() -> PathBuf {
    repo().join("crates/model/tests/fixtures")
}

/// `crates/gguf/tests/fixtures`.
pub fn gguf_fixtures() -> PathBuf {
    repo().join("crates/gguf/tests/fixtures")
}

/// Copies a tiny HF fixture (`tiny-mistral` or `tiny-llama`) plus the fixture tokenizer into
/// `dst`. `no_swa` clears Mistral's `sliding_window` (llama.cpp's llama arch has no SWA).
pub fn tiny_hf_dir(name: &str, dst: &Path, no_swa: bool) -> PathBuf {
    let src = model_fixtures().join(name);
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("model") || n == "config.json" {
            std::fs::copy(e.path(), dst.join(&n)).unwrap();
        }
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(model_fixtures().join("tokenizer").join(f), dst.join(f)).unwrap();
    }
    if no_swa {
        edit_json(&dst.join("config.json"), |c| {
            c["sliding_window"] = Json::Null
        });
    }
    dst.to_path_buf()
}

/// The one run folder under `runs` (a test that expects exactly one).
pub fn only_run(runs: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

pub use tb_testkit::edit_json;

/// Runs the `tunebench` binary; returns (success, stdout, stderr).
pub fn tunebench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tunebench");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tunebench export gguf --model DIR --quant Q --out OUT`, which must succeed.
pub fn export(dir: &Path, quant: &str, out: &Path) {
    let (ok, _, err) = tunebench(&[
        "export",
        "gguf",
        "--model",
        dir.to_str().unwrap(),
        "--quant",
        quant,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "export {} {quant} failed: {err}", dir.display());
}

fn ensure_node_llama_cpp() {
    tb_testkit::node_llama_cpp();
}

/// `tools/oracles/llama_eval.mjs MODEL < request`.
pub fn llama_eval(gguf: &Path, request: &Json) -> Json {
    let out = tb_testkit::llama_oracle("llama_eval.mjs", gguf, &request.to_string());
    serde_json::from_slice(&out).expect("oracle output is JSON")
}

/// llama.cpp's `llama_model_quantize` through `tools/oracles/llama_quantize.py`.
pub fn llama_quantize(input: &Path, output: &Path, ftype: u32) {
    ensure_node_llama_cpp();
    let out = Command::new("python3")
        .arg(repo().join("tools/oracles/llama_quantize.py"))
        .arg(input)
        .arg(output)
        .arg(ftype.to_string())
        .arg("2")
        .output()
        .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "llama_model_quantize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Token ids from a JSON array.
pub fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Python with PyPI `gguf` (venv `target/pyenv-gguf`, see tb-testkit).
pub fn gguf_python() -> PathBuf {
    tb_testkit::gguf_python()
}

/// Checks that gguf-py reads `path`: same keys (and GGUF types), same tensor names, types and
/// shapes, and dequantizes every tensor to the same values as tb-gguf (sum of |x| per tensor).
pub fn check_with_gguf_py(path: &Path) {
    let script = r#"
import json, sys
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
r = GGUFReader(sys.argv[1])
kv = {k: [int(t) for t in f.types] for k, f in r.fields.items() if not k.startswith("GGUF.")}
ts = []
for t in r.tensors:
    v = dequantize(t.data, t.tensor_type).astype(np.float64)
    ts.append([t.name, t.tensor_type.name, [int(x) for x in t.shape], float(np.abs(v).sum())])
print(json.dumps({"kv": kv, "tensors": ts}))
"#;
    let out = Command::new(gguf_python())
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gguf-py failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Json = serde_json::from_slice(&out.stdout).unwrap();
    let f = tb_gguf::GgufFile::open(path).unwrap();
    let kv = j["kv"].as_object().unwrap();
    assert_eq!(kv.len(), f.metadata().len(), "key count");
    for (k, v) in f.metadata().iter() {
        let types: Vec<u64> = kv[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect();
        let want = match v {
            tb_gguf::Value::Array(a) => vec![9, a.elem_type() as u64],
            v => vec![v.value_type() as u64],
        };
        assert_eq!(types, want, "{}: key {k}", path.display());
    }
    let ts = j["tensors"].as_array().unwrap();
    assert_eq!(ts.len(), f.tensors().len());
    for (t, p) in f.tensors().iter().zip(ts) {
        assert_eq!(p[0].as_str().unwrap(), t.name);
        assert_eq!(
            p[1].as_str().unwrap(),
            t.ty.name().to_uppercase(),
            "{}",
            t.name
        );
        let shape: Vec<u64> = p[2]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(shape, t.ne, "{} (gguf-py shape is ggml order)", t.name);
        let ours: f64 = f
            .tensor_f32(&t.name)
            .unwrap()
            .iter()
            .map(|x| f64::from(x.abs()))
            .sum();
        let theirs = p[3].as_f64().unwrap();
        assert!(
            (ours - theirs).abs() <= 1e-9 * theirs.max(1.0),
            "{}: {} dequantizes differently ({ours} vs {theirs})",
            path.display(),
            t.name
        );
    }
}

/// Compares tensor tables and data of two GGUFs; returns the number of tensors compared.
pub fn assert_same_tensors(ours: &Path, theirs: &Path) -> usize {
    let a = tb_gguf::GgufFile::open(ours).unwrap();
    let b = tb_gguf::GgufFile::open(theirs).unwrap();
    let table = |f: &tb_gguf::GgufFile| -> Vec<(String, tb_gguf::GgmlType, Vec<u64>)> {
        f.tensors()
            .iter()
            .map(|t| (t.name.clone(), t.ty, t.ne.clone()))
            .collect()
    };
    assert_eq!(
        table(&a),
        table(&b),
        "tensor order/type/shape tables differ"
    );
    for t in b.tensors() {
        let x = a.tensor_data(&t.name).unwrap();
        let y = b.tensor_data(&t.name).unwrap();
        let bad = x
            .chunks(t.ty.type_size())
            .zip(y.chunks(t.ty.type_size()))
            .filter(|(p, q)| p != q)
            .count();
        assert_eq!(bad, 0, "{} ({}): {bad} blocks differ", t.name, t.ty);
    }
    b.tensors().len()
}
