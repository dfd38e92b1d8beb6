//! The Ollama client against tools/ollama-compat running SmolLM2-135M-Instruct (Q4_1):
//! blobs, create, chat and generate (streamed and not), show, tags, delete, and the failure
//! modes: nothing listening, 500 with an error body, a stream cut halfway, a server slower
//! than the timeout, a bad blob digest.
#![expect(clippy::print_stderr, reason = "reports fixture setup time")]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{fresh_models_dir, smollm2_gguf, CompatServer};
use tb_eval::judge::{judge, JudgeConfig};
use tb_eval::ollama::{
    BlobDigest, ChatRequest, ClientConfig, CreateRequest, ErrorKind, GenerateRequest, Message,
    OllamaClient, Options, Role,
};

const MODEL: &str = "smol-test";

/// Fault rules for the second server; they only touch requests for these model names.
const FAULTS: &str =
    "/api/chat:model=flaky:error=500:message=llama runner process has terminated:times=1;\
                      /api/chat:model=broken:error=500:message=llama runner process has terminated;\
                      /api/chat:model=cut:cut=3;\
                      /api/generate:model=cut:cut=1;\
                      /api/generate:model=cut-once:cut=1:times=1;\
                      /api/chat:model=slow:delay=4000";

struct Fixture {
    server: CompatServer,
    faulty: CompatServer,
    _dir: PathBuf,
}

/// One faithful server and one with fault rules, sharing a models dir, with `MODEL` (and the
/// aliases the fault rules name) created from the real GGUF.
fn fixture() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let t0 = Instant::now();
        let gguf = smollm2_gguf();
        let dir = fresh_models_dir("ollama_compat");
        let server = CompatServer::start(&dir, None);
        let faulty = CompatServer::start(&dir, Some(FAULTS));
        let client = OllamaClient::new(&server.host).unwrap();
        let digest = client.push_blob(&gguf).expect("upload the GGUF");
        for name in [MODEL, "flaky", "broken", "cut", "cut-once", "slow"] {
            let req = CreateRequest {
                model: name.into(),
                files: [("model.gguf".to_owned(), digest.to_string())].into(),
                parameters: Some(Options {
                    num_ctx: Some(512),
                    ..Options::default()
                }),
                ..CreateRequest::default()
            };
            let last = client.create(&req, |_| {}).expect("create");
            assert_eq!(last.status, "success");
        }
        eprintln!("fixture ready in {:.1}s", t0.elapsed().as_secs_f64());
        Fixture {
            server,
            faulty,
            _dir: dir,
        }
    })
}

fn client() -> OllamaClient {
    OllamaClient::new(&fixture().server.host).unwrap()
}

fn quick_config() -> ClientConfig {
    ClientConfig {
        max_retries: 2,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        ..ClientConfig::default()
    }
}

fn faulty_client(config: ClientConfig) -> OllamaClient {
    OllamaClient::with_config(&fixture().faulty.host, config).unwrap()
}

fn greedy(n: i32) -> Option<Options> {
    Some(Options {
        temperature: Some(0.0),
        seed: Some(42),
        num_predict: Some(n),
        ..Options::default()
    })
}

fn question(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message::new(Role::User, "What is the capital of France?")],
        options: greedy(24),
        ..ChatRequest::default()
    }
}

#[test]
fn version_tags_show() {
    let c = client();
    assert!(!c.version().unwrap().is_empty());
    let tags = c.tags().unwrap();
    let m = tags
        .iter()
        .find(|m| m.name == format!("{MODEL}:latest"))
        .expect("model listed");
    assert_eq!(m.details.format, "gguf");
    assert_eq!(m.details.family, "llama");
    assert_eq!(m.details.quantization_level, "Q4_1");
    let show = c.show(MODEL).unwrap();
    assert!(
        show.template.contains("<|im_start|>"),
        "ChatML template detected from the GGUF: {}",
        show.template
    );
    assert!(show.parameters.unwrap_or_default().contains("<|im_end|>"));
    let info = show.model_info.expect("model_info");
    assert_eq!(info["general.architecture"], "llama");
}

#[test]
fn chat_not_streamed_and_streamed_agree() {
    let c = client();
    let whole = c.chat(&question(MODEL)).unwrap();
    assert!(whole.done);
    assert!(
        whole.message.content.contains("Paris"),
        "answer: {:?}",
        whole.message.content
    );
    assert_eq!(whole.message.role, Role::Assistant);
    let m = whole.metrics;
    assert!(m.eval_count.unwrap() > 0 && m.prompt_eval_count.unwrap() > 0);
    assert!(m.eval_tokens_per_second().unwrap() > 0.0);
    assert!(m.total().unwrap() >= Duration::from_nanos(m.eval_duration.unwrap()));

    let mut chunks = 0;
    let streamed = c.chat_stream(&question(MODEL), |_| chunks += 1).unwrap();
    assert!(chunks > 2, "streamed in {chunks} chunks");
    assert_eq!(
        streamed.message.content, whole.message.content,
        "greedy answers agree"
    );
    assert!(matches!(
        streamed.done_reason.as_deref(),
        Some("stop" | "length")
    ));
    assert!(!streamed.message.content.contains("<|im_end|>"));
}

#[test]
fn generate_not_streamed_and_streamed_agree() {
    let c = client();
    let req = GenerateRequest {
        model: MODEL.into(),
        prompt: "Name one colour.".into(),
        options: greedy(6),
        ..GenerateRequest::default()
    };
    let whole = c.generate(&req).unwrap();
    assert_eq!(whole.done_reason.as_deref(), Some("length"));
    assert_eq!(whole.metrics.eval_count, Some(6));
    assert!(whole.context.as_ref().is_some_and(|c| !c.is_empty()));
    let mut pieces = Vec::new();
    let streamed = c
        .generate_stream(&req, |c| pieces.push(c.response.clone()))
        .unwrap();
    assert_eq!(streamed.response, whole.response);
    assert_eq!(pieces.concat(), whole.response);
}

#[test]
fn stop_parameter_ends_generation() {
    let c = client();
    let req = GenerateRequest {
        model: MODEL.into(),
        prompt: "1, 2, 3, 4, 5, 6, 7, 8".into(),
        raw: true,
        options: Some(Options {
            stop: Some(vec!["1".into()]),
            ..greedy(16).unwrap()
        }),
        ..GenerateRequest::default()
    };
    let r = c.generate(&req).unwrap();
    assert_eq!(r.done_reason.as_deref(), Some("stop"), "{r:?}");
    assert!(!r.response.contains('1'), "{:?}", r.response);
}

#[test]
fn judge_returns_a_schema_shaped_grade() {
    let mut config = JudgeConfig::new(MODEL);
    config.options.num_predict = Some(64);
    config.options.num_ctx = Some(512);
    let grade = judge(
        &client(),
        &config,
        "Fransa'nın başkenti neresidir?",
        "Paris",
        "Fransa'nın başkenti Paris'tir.",
    )
    .unwrap();
    assert!((1..=5).contains(&grade.score), "{grade:?}");
}

#[test]
fn create_streams_ollamas_status_lines() {
    let c = client();
    let digest = c.push_blob(&smollm2_gguf()).unwrap();
    let req = CreateRequest {
        model: "status-lines".into(),
        files: [("m.gguf".to_owned(), digest.to_string())].into(),
        system: Some("Kısa cevap ver.".into()),
        ..CreateRequest::default()
    };
    let mut statuses = Vec::new();
    c.create(&req, |p| statuses.push(p.status.clone())).unwrap();
    assert_eq!(statuses.first().map(String::as_str), Some("parsing GGUF"));
    assert!(
        statuses.contains(&format!("using existing layer {digest}")),
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("creating new layer sha256:")),
        "{statuses:?}"
    );
    assert_eq!(
        &statuses[statuses.len() - 2..],
        ["writing manifest", "success"]
    );
    assert_eq!(
        c.show("status-lines").unwrap().system.as_deref(),
        Some("Kısa cevap ver.")
    );
}

#[test]
fn missing_model_is_a_404_with_ollamas_text_and_no_retry() {
    let err = client().chat(&question("no-such-model")).unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(
        err.ollama_message(),
        Some("model 'no-such-model' not found")
    );
    assert_eq!(err.retries(), 0);
}

#[test]
fn create_from_unknown_blob_fails_with_ollamas_error() {
    let req = CreateRequest {
        model: "ghost".into(),
        files: [(
            "ghost.gguf".to_owned(),
            format!("sha256:{}", "ab".repeat(32)),
        )]
        .into(),
        ..CreateRequest::default()
    };
    let err = client().create(&req, |_| {}).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Stream { .. }), "{err}");
    assert!(err.to_string().contains("no such file"), "{err}");
}

#[test]
fn delete_then_delete_again_is_404() {
    let c = client();
    let digest = c.push_blob(&smollm2_gguf()).unwrap();
    let req = CreateRequest {
        model: "to-delete".into(),
        files: [("m.gguf".to_owned(), digest.to_string())].into(),
        ..CreateRequest::default()
    };
    c.create(&req, |_| {}).unwrap();
    c.delete("to-delete").unwrap();
    assert_eq!(c.delete("to-delete").unwrap_err().status(), Some(404));
}

#[test]
fn bad_blob_digest_is_rejected_with_400() {
    let c = client();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob.bin");
    std::fs::write(&path, b"not what the digest says").unwrap();
    let wrong = BlobDigest::of_bytes(b"something else");
    let err = c.upload_blob(&path, &wrong).unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(
        err.ollama_message().unwrap().starts_with("digest mismatch"),
        "{err}"
    );
    assert_eq!(err.retries(), 0);
    assert!(!c.blob_exists(&wrong).unwrap());
}

#[test]
fn server_down_says_how_to_start_ollama() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = OllamaClient::with_config(&format!("127.0.0.1:{port}"), quick_config()).unwrap();
    let err = c.version().unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Unreachable { .. }), "{err}");
    assert_eq!(err.retries(), 2, "connect errors are retried");
    let text = err.to_string();
    assert!(
        text.contains("ollama serve") && text.contains("OLLAMA_HOST"),
        "{text}"
    );
}

#[test]
fn transient_500_is_retried_then_succeeds() {
    let r = faulty_client(quick_config())
        .chat(&question("flaky"))
        .unwrap();
    assert!(r.message.content.contains("Paris"));
}

#[test]
fn persistent_500_gives_up_with_ollamas_message() {
    let err = faulty_client(quick_config())
        .chat(&question("broken"))
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(
        err.ollama_message(),
        Some("llama runner process has terminated")
    );
    assert_eq!(err.retries(), 2);
    assert!(err.to_string().contains("gave up after 2 retries"), "{err}");
}

#[test]
fn stream_cut_halfway_is_reported_not_replayed() {
    let mut seen = 0;
    let err = faulty_client(quick_config())
        .chat_stream(&question("cut"), |_| seen += 1)
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::StreamCut { chunks: 3, .. }),
        "{err}"
    );
    assert_eq!(seen, 3);
    assert_eq!(err.retries(), 0, "chunks were already handed out");
}

#[test]
fn cut_body_of_idempotent_call_is_retried() {
    let c = faulty_client(quick_config());
    let req = GenerateRequest {
        model: "cut-once".into(),
        prompt: "Say hi".into(),
        options: greedy(4),
        ..GenerateRequest::default()
    };
    assert!(c.generate(&req).unwrap().done);
    let always = GenerateRequest {
        model: "cut".into(),
        ..req
    };
    let err = c.generate(&always).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::StreamCut { .. }), "{err}");
    assert_eq!(err.retries(), 2);
}

#[test]
fn slow_server_times_out_after_retries() {
    let config = ClientConfig {
        inference_timeout: Duration::from_millis(800),
        max_retries: 1,
        ..quick_config()
    };
    let t0 = Instant::now();
    let err = faulty_client(config).chat(&question("slow")).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Timeout { .. }), "{err}");
    assert_eq!(err.retries(), 1);
    assert!(t0.elapsed() >= Duration::from_millis(1600));
    assert!(err.elapsed() >= Duration::from_millis(1600));
}
