//! `tunebench train unsloth --gguf ...`: one command from training to GGUFs that llama.cpp
//! loads and an Ollama Modelfile whose template renders exactly like the model's chat template
//! (checked with tools/ollama-compat's Go-template engine).
#![expect(clippy::print_stderr, reason = "tests report what llama.cpp did")]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;
use tb_model::{
    generate, ChatMessage, CpuBackend, GenerationConfig, LoadedModel, OllamaTemplate, Sampling,
    TemplateFamily,
};

fn write_dataset(root: &Path) -> PathBuf {
    let path = root.join("train.jsonl");
    let lines: Vec<String> = (0..6)
        .map(|i| format!(r#"{{"id": "t{i}", "category": "general", "instruction": "Soru {i}?", "output": "Cevap {i}."}}"#))
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

fn run_dir(runs: &Path) -> PathBuf {
    std::fs::read_dir(runs)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path()
}

/// Renders messages with tools/ollama-compat's Go-template engine, adding the Modelfile's
/// SYSTEM the way Ollama does when the conversation has none.
fn ollama_render(template: &str, system: Option<&str>, messages: &[ChatMessage]) -> String {
    let mut msgs: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    if let Some(s) = system {
        if messages.first().is_none_or(|m| m.role != "system") {
            msgs.insert(0, json!({"role": "system", "content": s}));
        }
    }
    let module = repo().join("tools/ollama-compat/src/template.js");
    let script = format!(
        "import {{ renderChat }} from {};\nlet s='';process.stdin.on('data',d=>s+=d).on('end',()=>{{const r=JSON.parse(s);process.stdout.write(JSON.stringify(renderChat(r.t,r.m)));}});",
        serde_json::to_string(&format!("file://{}", module.display())).unwrap()
    );
    let mut child = Command::new("node")
        .args(["--input-type=module", "-e", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node must be installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json!({"t": template, "m": msgs}).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Minimal Modelfile reader (docs/modelfile.mdx): instruction, then a value that may be a
/// triple-quoted block; unknown instructions are errors.
fn parse_modelfile(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (inst, rest) = line.split_once(' ').expect("instruction and value");
        let inst = inst.to_ascii_uppercase();
        assert!(
            [
                "FROM",
                "TEMPLATE",
                "SYSTEM",
                "PARAMETER",
                "ADAPTER",
                "LICENSE",
                "MESSAGE",
                "REQUIRES"
            ]
            .contains(&inst.as_str()),
            "unknown instruction {inst}"
        );
        let value = if let Some(body) = rest.strip_prefix("\"\"\"") {
            let mut v = body.to_string();
            while !v.ends_with("\"\"\"") {
                v.push('\n');
                v.push_str(lines.next().expect("unterminated \"\"\""));
            }
            v.trim_end_matches("\"\"\"").to_string()
        } else {
            rest.to_string()
        };
        out.push((inst, value));
    }
    out
}

#[test]
fn one_command_to_gguf_and_modelfile() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_hf_dir("tiny-mistral", &tmp.path().join("base"), true);
    let runs = tmp.path().join("runs");
    let cfg = tmp.path().join("exp.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"tiny\"\n[model]\nbase = \"{}\"\n[data]\ntrain = \"{}\"\nmax_seq_len = 64\n[train]\nmicro_batch = 2\nmax_steps = 6\nruns_dir = \"{}\"\n[optimizer]\nlr = 0.02\n[lora]\nr = 4\nalpha = 8\n[eval]\nnum_ctx = 512\n",
            model.display(),
            write_dataset(tmp.path()).display(),
            runs.display()
        ),
    )
    .unwrap();
    let (ok, out, err) = tunebench(&[
        "train",
        "unsloth",
        "--config",
        cfg.to_str().unwrap(),
        "--gguf",
        "q4_k_m,f16",
        "--no-progress",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("ollama create NAME -f"), "{out}");
    let run = run_dir(&runs);
    for f in [
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "tiny-Q4_K_M.gguf",
        "tiny-F16.gguf",
        "Modelfile",
        "summary.json",
        "merged/config.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let listed: Vec<&str> = summary["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&"tiny-Q4_K_M.gguf") && listed.contains(&"Modelfile"),
        "{listed:?}"
    );
    // Padding-free: each micro-batch is one row of exactly its examples' tokens.
    assert_eq!(summary["padding_fraction"].as_f64(), Some(0.0), "{summary}");
    assert_eq!(summary["slots"], summary["trained_tokens"], "{summary}");

    // serving.json: the one command, its seconds, both GGUFs with their sizes, the Modelfile.
    let serving = tb_train::ServingPath::load(&run).unwrap();
    assert_eq!(serving.steps.len(), 1, "{serving:?}");
    let step = &serving.steps[0];
    assert!(step.command.starts_with("tunebench train unsloth --gguf"));
    assert!(step.modelfile);
    assert_eq!(step.ggufs.len(), 2);
    for (name, bytes) in &step.ggufs {
        assert_eq!(*bytes, std::fs::metadata(run.join(name)).unwrap().len());
    }

    // llama.cpp loads both; the F16 greedy continuation equals tb-model's on the merged folder.
    let device = Default::default();
    let merged = LoadedModel::<CpuBackend>::load(run.join("merged"), &device).unwrap();
    let prompt = merged
        .tokenizer()
        .unwrap()
        .encode_chat(&[ChatMessage::new("user", "Soru 1?")], true)
        .unwrap();
    let config = GenerationConfig {
        max_new_tokens: 8,
        sampling: Sampling::Greedy,
        stop_ids: vec![],
    };
    let ours = generate(&merged.model, &prompt, &config, &Default::default(), |_| {})
        .unwrap()
        .tokens;
    for file in ["tiny-F16.gguf", "tiny-Q4_K_M.gguf"] {
        let r = llama_eval(
            &run.join(file),
            &json!({"texts": [], "prompts": [prompt.clone()], "max_tokens": 8}),
        );
        let cont = ids(&r["continuations"][0]);
        eprintln!("{file}: llama.cpp continuation {cont:?}, tb-model on merged {ours:?}");
        assert!(!cont.is_empty(), "{file}: llama.cpp generated nothing");
        if file == "tiny-F16.gguf" {
            assert!(ours.starts_with(&cont), "{file}: {cont:?} vs {ours:?}");
        }
    }

    // The Modelfile: known instructions only, FROM the first GGUF, ChatML template, stops.
    let text = std::fs::read_to_string(run.join("Modelfile")).unwrap();
    let parsed = parse_modelfile(&text);
    assert!(
        parsed.contains(&("FROM".into(), "./tiny-Q4_K_M.gguf".into())),
        "{text}"
    );
    assert!(
        parsed.contains(&("PARAMETER".into(), "stop \"<|im_end|>\"".into())),
        "{text}"
    );
    assert!(
        parsed.contains(&("PARAMETER".into(), "num_ctx 512".into())),
        "{text}"
    );
    let template = parsed
        .iter()
        .find(|(i, _)| i == "TEMPLATE")
        .map(|(_, v)| v.clone())
        .expect("TEMPLATE");
    let conversation = [ChatMessage::new(
        "user",
        "Merhaba, faturamı nasıl öğrenirim?",
    )];
    assert_eq!(
        ollama_render(&template, None, &conversation),
        merged
            .tokenizer()
            .unwrap()
            .render_chat(&conversation, true)
            .unwrap()
    );
}

#[test]
fn modelfile_template_renders_like_jinja_including_a_default_system_prompt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_hf_dir("tiny-mistral", &tmp.path().join("base"), true);
    let mut tok = tb_model::TextTokenizer::from_dir(&dir).unwrap();
    // SmolLM2's template: a default system prompt when the conversation has none.
    let smollm2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    for source in [None, Some(smollm2)] {
        if let Some(s) = source {
            tok.set_chat_template(s).unwrap();
        }
        let chat = OllamaTemplate::for_tokenizer(&tok);
        assert_eq!(chat.family, Some(TemplateFamily::ChatMl));
        assert_eq!(chat.system.is_some(), source.is_some());
        let template = chat.template.clone().unwrap();
        for conv in conversations() {
            let jinja = tok.render_chat(&conv, true).unwrap();
            let go = ollama_render(&template, chat.system.as_deref(), &conv);
            assert_eq!(go, jinja, "template {source:?}");
        }
        let mf = tb_unsloth::modelfile::modelfile("m.gguf", &chat, 2048);
        assert_eq!(parse_modelfile(&mf)[0], ("FROM".into(), "./m.gguf".into()));
    }
}

fn conversations() -> [Vec<ChatMessage>; 3] {
    [
        vec![ChatMessage::new("user", "Şifremi unuttum.")],
        vec![
            ChatMessage::new("system", "Kısa cevap ver."),
            ChatMessage::new("user", "İptal?"),
        ],
        vec![
            ChatMessage::new("user", "Fatura?"),
            ChatMessage::new("assistant", "Uygulamada."),
            ChatMessage::new("user", "Peki ödeme?"),
        ],
    ]
}

/// Meta-Llama-3-8B-Instruct's chat template (BOS text first, contents trimmed).
const LLAMA3_TEMPLATE: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/// ChatML as HF documents it, with Turkcell-LLM-7b-v1's special tokens (the fixture tokenizer's:
/// `<|im_start|>` is BOS and EOS is `<|im_end|>`).
const TURKCELL_TEMPLATE: &str = "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A tiny model folder whose tokenizer carries `template`; with `llama3` the fixture's two
/// special tokens become Llama 3's BOS and EOT (the vocabulary keeps the weights' size).
fn model_with_template(root: &Path, name: &str, template: &str, llama3: bool) -> PathBuf {
    let dir = tiny_hf_dir("tiny-mistral", &root.join(name), true);
    if llama3 {
        let path = dir.join("tokenizer.json");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("<|im_start|>", "<|begin_of_text|>")
            .replace("<|im_end|>", "<|eot_id|>");
        std::fs::write(&path, text).unwrap();
    }
    edit_json(&dir.join("tokenizer_config.json"), |c| {
        c["chat_template"] = json!(template);
        if llama3 {
            c["bos_token"] = json!("<|begin_of_text|>");
            c["eos_token"] = json!("<|eot_id|>");
            c["pad_token"] = json!("<|eot_id|>");
        }
    });
    dir
}

/// The Modelfile of `train unsloth --gguf` (mapped from the HF folder's tokenizer) and the
/// `/api/create` of `eval` (mapped from the exported GGUF's tokenizer) carry the same TEMPLATE,
/// SYSTEM and stops for ChatML, Llama 3 and Turkcell's template, and that TEMPLATE renders with
/// tools/ollama-compat's Go-template engine what the Jinja template renders (after the BOS text,
/// which the runner adds itself).
#[test]
fn modelfile_and_eval_create_the_same_ollama_model_for_chatml_llama3_and_turkcell() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "chatml",
            tb_model::chat_template::CHATML_TEMPLATE,
            false,
            TemplateFamily::ChatMl,
        ),
        ("llama3", LLAMA3_TEMPLATE, true, TemplateFamily::Llama3),
        ("turkcell", TURKCELL_TEMPLATE, false, TemplateFamily::ChatMl),
    ];
    let digest = tb_eval::ollama::BlobDigest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
    for (name, template, llama3, family) in cases {
        let dir = model_with_template(tmp.path(), name, template, llama3);
        let hf = tb_model::TextTokenizer::from_dir(&dir).unwrap();
        let gguf = tmp.path().join(format!("{name}.gguf"));
        let options = tb_gguf::ExportOptions {
            mix: tb_gguf::QuantMix::F16,
            threads: 1,
        };
        tb_model::gguf_export::export_hf_dir(&dir, &gguf, options).unwrap();
        let session = tb_eval::engine::Session::open(&gguf).unwrap();
        let for_modelfile = OllamaTemplate::for_tokenizer(&hf);
        let for_eval = OllamaTemplate::for_tokenizer(session.tokenizer());
        assert_eq!(for_eval, for_modelfile, "{name}");
        assert_eq!(for_eval.family, Some(family), "{name}");

        let mf = parse_modelfile(&tb_unsloth::modelfile::modelfile(
            "m.gguf",
            &for_modelfile,
            2048,
        ));
        let value = |inst: &str| mf.iter().find(|(i, _)| i == inst).map(|(_, v)| v.as_str());
        let stops: Vec<String> = mf
            .iter()
            .filter_map(|(i, v)| {
                (i == "PARAMETER")
                    .then(|| v.strip_prefix("stop "))
                    .flatten()
            })
            .map(|s| serde_json::from_str(s).unwrap())
            .collect();
        let request = tb_eval::evaluation::create_request("m", "m.gguf", &digest, &for_eval, 2048);
        let request = serde_json::to_value(&request).unwrap();
        assert_eq!(value("TEMPLATE"), request["template"].as_str(), "{name}");
        assert_eq!(value("SYSTEM"), request["system"].as_str(), "{name}");
        assert_eq!(json!(stops), request["parameters"]["stop"], "{name}");
        assert_eq!(
            stops,
            family.stops(),
            "{name}: Ollama's stops for the family"
        );
        assert_eq!(value("TEMPLATE"), Some(family.go_template()), "{name}");

        let bos = hf.bos().map(|b| b.text.clone()).unwrap_or_default();
        for conv in conversations() {
            let jinja = hf.render_chat(&conv, true).unwrap();
            let go = ollama_render(family.go_template(), for_eval.system.as_deref(), &conv);
            assert_eq!(go, family.render(&conv), "{name}");
            assert!(
                jinja == go || jinja == format!("{bos}{go}"),
                "{name}: Jinja {jinja:?} vs Ollama {go:?}"
            );
        }
    }
}

#[test]
fn unsloth_rejects_dropout_and_bad_quant_names_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_hf_dir("tiny-mistral", &tmp.path().join("base"), true);
    let cfg = tmp.path().join("exp.toml");
    let body = format!(
        "[model]\nbase = \"{}\"\n[data]\ntrain = \"{}\"\nmax_seq_len = 64\n[train]\nmax_steps = 2\nruns_dir = \"{}\"\n",
        model.display(),
        write_dataset(tmp.path()).display(),
        tmp.path().join("runs").display()
    );
    std::fs::write(&cfg, format!("{body}[lora]\ndropout = 0.1\n")).unwrap();
    let (ok, _, err) = tunebench(&["train", "unsloth", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && err.contains("lora.dropout"), "{err}");
    std::fs::write(&cfg, &body).unwrap();
    let (ok, _, err) = tunebench(&[
        "train",
        "unsloth",
        "--config",
        cfg.to_str().unwrap(),
        "--gguf",
        "q3_weird",
    ]);
    assert!(!ok && err.contains("q3_weird"), "{err}");
    // A device this build has no backend for (the tests build wgpu, not CUDA) and an unknown one.
    let on = |device: &str| body.replace("[train]\n", &format!("[train]\ndevice = \"{device}\"\n"));
    for method in ["unsloth", "peft"] {
        std::fs::write(&cfg, on("cuda")).unwrap();
        let (ok, _, err) = tunebench(&["train", method, "--config", cfg.to_str().unwrap()]);
        assert!(
            !ok && err.contains("train.device") && err.contains("--features cuda"),
            "{method}: {err}"
        );
    }
    std::fs::write(&cfg, on("tpu")).unwrap();
    let (ok, _, err) = tunebench(&["train", "peft", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && err.contains("tpu"), "{err}");
    assert!(
        !tmp.path().join("runs").exists(),
        "a run folder was created before the arguments were checked"
    );
}

/// `make-model` writes a random-weight Mistral folder that both the loader and the trainer take
/// (what tools/gpu-check.sh does at Turkcell-7B width), and refuses bad requests.
#[test]
fn make_model_writes_a_trainable_random_model() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = model_fixtures().join("tokenizer");
    let out = tmp.path().join("rand");
    let args = |out: &Path, extra: &[&str]| {
        let mut a: Vec<String> = [
            "make-model",
            "--preset",
            "tiny",
            "--layers",
            "3",
            "--tokenizer",
            tok.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| tunebench(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok, stdout, err) = run(args(&out, &[]));
    assert!(ok, "{err}");
    assert!(stdout.contains("3 layers"), "{stdout}");
    let loaded = LoadedModel::<CpuBackend>::load(&out, &Default::default()).unwrap();
    assert_eq!(loaded.config.num_hidden_layers, 3);
    assert_eq!(loaded.config.vocab_size, 320);
    // The same seed gives the same bytes; the output folder is never overwritten.
    let again = tmp.path().join("again");
    assert!(run(args(&again, &[])).0);
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        std::fs::read(again.join("model.safetensors")).unwrap()
    );
    let (ok, _, err) = run(args(&out, &[]));
    assert!(!ok && err.contains("already exists"), "{err}");
    // A vocabulary smaller than the tokenizer's ids is refused, and nothing is left behind.
    let small = tmp.path().join("small");
    let (ok, _, err) = run(args(&small, &["--vocab", "100"]));
    assert!(!ok && err.contains("--vocab is 100"), "{err}");
    assert!(!small.exists() && !small.with_extension("partial").exists());

    let cfg = tmp.path().join("exp.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\nbase = \"{}\"\n[data]\ntrain = \"{}\"\nmax_seq_len = 64\n[train]\nmax_steps = 2\nruns_dir = \"{}\"\n[lora]\ndropout = 0.0\n",
            out.display(),
            write_dataset(tmp.path()).display(),
            tmp.path().join("runs").display()
        ),
    )
    .unwrap();
    let (ok, _, err) = tunebench(&["train", "unsloth", "--config", cfg.to_str().unwrap()]);
    assert!(ok, "{err}");
}
