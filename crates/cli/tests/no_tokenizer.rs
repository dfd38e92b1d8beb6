//! A model folder with `config.json` and weights but no tokenizer files (transformers loads
//! such a folder): commands that only need token ids run on it; those that need the
//! vocabulary say that the tokenizer files are what is missing.

mod common;

use common::*;

#[test]
fn a_folder_without_tokenizer_files_runs_on_token_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_hf_dir("tiny-mistral", &tmp.path().join("model"), true);
    // `logits --ids 1,2,3` into `out`, which must succeed; the logits written.
    let logits = |out: &str| {
        let out = tmp.path().join(out);
        let (ok, _, err) = tunebench(&[
            "logits",
            "--model",
            model.to_str().unwrap(),
            "--ids",
            "1,2,3",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        std::fs::read(out).unwrap()
    };
    let with = logits("with.safetensors");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::remove_file(model.join(f)).unwrap();
    }
    assert_eq!(with, logits("without.safetensors"));

    let gguf = tmp.path().join("m.gguf");
    let (ok, _, err) = tunebench(&[
        "export",
        "gguf",
        "--model",
        model.to_str().unwrap(),
        "--quant",
        "f32",
        "--out",
        gguf.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("tokenizer.json") && err.contains("vocabulary"),
        "{err}"
    );
    assert!(!gguf.exists(), "a failed export left a file");
    let (ok, _, err) = tunebench(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "Merhaba",
    ]);
    assert!(!ok);
    assert!(err.contains("tokenizer.json"), "{err}");
}
