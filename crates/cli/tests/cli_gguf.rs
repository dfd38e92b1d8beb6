//! The GGUF subcommands end to end: `export gguf`, `quantize`, `inspect [--json]`, and errors
//! that exit non-zero with the cause and leave no output file.

mod common;

use common::*;
use serde_json::Value as Json;

#[test]
fn quantize_of_the_f16_export_equals_the_q4_k_m_export_and_inspect_shows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_hf_dir("tiny-mistral", &tmp.path().join("m"), false);
    let f16 = tmp.path().join("m-f16.gguf");
    let q = tmp.path().join("m-q4km.gguf");
    let requant = tmp.path().join("m-requant.gguf");
    export(&dir, "f16", &f16);
    export(&dir, "q4_k_m", &q);
    let (ok, _, err) = tunebench(&[
        "quantize",
        f16.to_str().unwrap(),
        requant.to_str().unwrap(),
        "--quant",
        "q4_k_m",
        "--threads",
        "1",
    ]);
    assert!(ok, "{err}");
    assert_eq!(assert_same_tensors(&q, &requant), 21);

    let (ok, text, err) = tunebench(&["inspect", q.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        text.contains("general.file_type") && text.contains("u32"),
        "{text}"
    );
    assert!(
        text.contains("(320 elements)"),
        "long arrays are summarised: {text}"
    );
    assert!(
        text.contains("blk.1.ffn_down.weight") && text.contains("totals: 21 tensors"),
        "{text}"
    );
    let (ok, js, err) = tunebench(&["inspect", "--json", q.to_str().unwrap()]);
    assert!(ok, "{err}");
    let j: Json = serde_json::from_str(&js).unwrap();
    assert_eq!(j["version"], 3);
    assert_eq!(j["totals"]["tensors"], 21);
    let tokens = j["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "tokenizer.ggml.tokens")
        .unwrap();
    assert_eq!(tokens["value"]["len"], 320);
    let t = &j["tensors"].as_array().unwrap()[0];
    assert!(t["name"].is_string() && t["type"].is_string() && t["bytes"].is_u64());
}

#[test]
fn errors_exit_non_zero_with_the_cause_and_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_hf_dir("tiny-llama", &tmp.path().join("m"), false);
    edit_json(&dir.join("config.json"), |c| {
        c["architectures"] = serde_json::json!(["FalconForCausalLM"])
    });
    let out = tmp.path().join("x.gguf");
    let (ok, _, err) = tunebench(&[
        "export",
        "gguf",
        "--model",
        dir.to_str().unwrap(),
        "--quant",
        "q4_0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("FalconForCausalLM") && err.contains("exporting"),
        "{err}"
    );
    assert!(!out.exists());
    let (ok, _, err) = tunebench(&["export", "gguf", "--model", ".", "--quant", "q3_k"]);
    assert!(!ok && err.contains("q3_k"), "{err}");
    let (ok, _, err) = tunebench(&["inspect", dir.join("config.json").to_str().unwrap()]);
    assert!(!ok && err.contains("GGUF"), "{err}");
}

#[test]
fn a_bad_gemm_isa_is_an_error_naming_the_variable() {
    let run = |value: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tunebench"))
            .args(["inspect", "missing.gguf"])
            .env("TB_GEMM_ISA", value)
            .output()
            .expect("run tunebench");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run("sse9");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("TB_GEMM_ISA") && err.contains("sse9"), "{err}");
    // The portable kernel exists on every CPU: the command then fails only on its own input.
    let (code, err) = run("scalar");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        !err.contains("TB_GEMM_ISA") && err.contains("missing.gguf"),
        "{err}"
    );
}

/// `tunebench generate` with the printed text only (stdout), which must succeed.
fn generate(model: &std::path::Path, extra: &[&str]) -> String {
    let mut args = vec![
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "Merhaba dünya",
        "--max-tokens",
        "8",
    ];
    args.extend_from_slice(extra);
    let (ok, text, err) = tunebench(&args);
    assert!(ok, "generate on {} failed: {err}", model.display());
    text
}

#[test]
fn generate_on_a_gguf_runs_the_quantized_engine_and_matches_the_hf_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_hf_dir("tiny-mistral", &tmp.path().join("m"), true);
    let f32 = tmp.path().join("m-f32.gguf");
    let q4 = tmp.path().join("m-q4km.gguf");
    export(&dir, "f32", &f32);
    export(&dir, "q4_k_m", &q4);
    // Greedy: the embedded engine on the F32 file says what the Burn model says on the folder.
    let hf = generate(&dir, &[]);
    assert!(!hf.trim().is_empty(), "no text from the HF folder");
    assert_eq!(
        generate(&f32, &[]),
        hf,
        "greedy text: F32 GGUF vs HF folder"
    );
    // Sampling is seeded: the same seed gives the same text, on the 4-bit file too.
    let sampled = ["--seed", "7", "--temperature", "1.5", "--top-p", "1.0"];
    let a = generate(&q4, &sampled);
    assert_eq!(
        generate(&q4, &sampled),
        a,
        "the same seed gives the same text"
    );
    let others: Vec<String> = (8..12)
        .map(|s| generate(&q4, &["--seed", &s.to_string(), "--temperature", "1.5"]))
        .collect();
    assert!(
        others.iter().any(|o| *o != a),
        "five seeds at temperature 1.5 gave one text: {a:?}"
    );
    // Sampling settings are checked as on the HF folder: non-zero exit naming the setting.
    for model in [&dir, &q4] {
        let (ok, _, err) = tunebench(&[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "x",
            "--seed",
            "1",
            "--temperature",
            "0",
        ]);
        assert!(!ok, "temperature 0 must be refused");
        assert!(err.contains("temperature must be > 0"), "{err}");
    }
    // A file that is not a GGUF: non-zero exit naming the file.
    let bad = tmp.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF but not really").unwrap();
    let (ok, _, err) = tunebench(&[
        "generate",
        "--model",
        bad.to_str().unwrap(),
        "--prompt",
        "x",
    ]);
    assert!(!ok, "a truncated GGUF must fail");
    assert!(err.contains("bad.gguf"), "{err}");
}
