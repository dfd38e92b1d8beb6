//! [`OllamaClient`]: the calls, timeouts and the retry loop.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::blocking::{Body, Client, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::blob::BlobDigest;
use super::error::{Error, ErrorKind, Result};
use super::host::parse_ollama_host;
use super::retry::{backoff, is_transient, CallPolicy};
use super::types::{
    ChatRequest, ChatResponse, CreateRequest, GenerateRequest, GenerateResponse, ModelSummary,
    ProgressResponse, ShowResponse,
};

/// Timeouts and retry budget of an [`OllamaClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest wait for an answer to a quick call (version, tags, show, delete, blob check).
    pub timeout: Duration,
    /// Longest wait for chat, generate and create: for the whole answer when not streamed,
    /// for the next chunk when streamed. Covers loading the model on first use.
    pub inference_timeout: Duration,
    /// Longest wait for a blob upload to be accepted.
    pub upload_timeout: Duration,
    /// Retries after the first attempt, for transient failures only.
    pub max_retries: u32,
    /// Backoff before the first retry; doubles each retry.
    pub backoff_base: Duration,
    /// Upper bound of the backoff.
    pub backoff_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            inference_timeout: Duration::from_secs(600),
            upload_timeout: Duration::from_secs(3600),
            max_retries: 3,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(8),
        }
    }
}

/// A blocking client for one Ollama server.
#[derive(Debug, Clone)]
pub struct OllamaClient {
    http: Client,
    base_url: String,
    config: ClientConfig,
}

/// A failed attempt: the error, and whether part of a stream already reached the caller
/// (then repeating the request would hand out the same chunks twice, so it is not retried).
struct Failure {
    kind: ErrorKind,
    delivered: bool,
}

impl From<ErrorKind> for Failure {
    fn from(kind: ErrorKind) -> Self {
        Self {
            kind,
            delivered: false,
        }
    }
}

const QUICK: CallPolicy = CallPolicy {
    idempotent: true,
    retry_server_errors: true,
};
const INFERENCE: CallPolicy = QUICK;
const CHANGE: CallPolicy = CallPolicy {
    idempotent: true,
    retry_server_errors: false,
};
const DELETE: CallPolicy = CallPolicy {
    idempotent: false,
    retry_server_errors: false,
};

impl OllamaClient {
    /// A client for the server named by `OLLAMA_HOST` (default `127.0.0.1:11434`), parsed as
    /// Ollama parses it (see [`parse_ollama_host`]).
    pub fn from_env() -> Result<Self> {
        let host = std::env::var("OLLAMA_HOST").unwrap_or_default();
        Self::with_config(&host, ClientConfig::default())
    }

    /// A client for `host`, in `OLLAMA_HOST` syntax (`127.0.0.1:11434`, `http://h:80`, ...).
    pub fn new(host: &str) -> Result<Self> {
        Self::with_config(host, ClientConfig::default())
    }

    /// A client for `host` with explicit timeouts and retry budget.
    pub fn with_config(host: &str, config: ClientConfig) -> Result<Self> {
        let base_url = parse_ollama_host(host)?;
        let http = Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .user_agent(concat!("tunebench-tb-eval/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ErrorKind::Client)?;
        Ok(Self {
            http,
            base_url,
            config,
        })
    }

    /// The server's base URL, e.g. `http://127.0.0.1:11434`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The timeouts and retry budget in use.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `GET /api/version`: the server's version; also the cheapest "is it running?" probe.
    pub fn version(&self) -> Result<String> {
        #[derive(serde::Deserialize)]
        struct V {
            version: String,
        }
        let url = self.url("/api/version");
        let v: V = self.retrying(QUICK, &url, || {
            let resp = self.send(self.http.get(&url), "GET", &url, self.config.timeout)?;
            read_json(resp, &url, self.config.timeout)
        })?;
        Ok(v.version)
    }

    /// `GET /api/tags`: the models the server has.
    pub fn tags(&self) -> Result<Vec<ModelSummary>> {
        #[derive(serde::Deserialize)]
        struct Tags {
            #[serde(default)]
            models: Vec<ModelSummary>,
        }
        let url = self.url("/api/tags");
        let t: Tags = self.retrying(QUICK, &url, || {
            let resp = self.send(self.http.get(&url), "GET", &url, self.config.timeout)?;
            read_json(resp, &url, self.config.timeout)
        })?;
        Ok(t.models)
    }

    /// `POST /api/show`: template, parameters, details and GGUF metadata of `model`.
    pub fn show(&self, model: &str) -> Result<ShowResponse> {
        let url = self.url("/api/show");
        let body = serde_json::json!({ "model": model });
        self.retrying(QUICK, &url, || {
            let resp = self.send(
                self.http.post(&url).json(&body),
                "POST",
                &url,
                self.config.timeout,
            )?;
            read_json(resp, &url, self.config.timeout)
        })
    }

    /// `DELETE /api/delete`. A missing model is an error with status 404. Not retried after
    /// the request may have reached the server (a repeated delete would report 404).
    pub fn delete(&self, model: &str) -> Result<()> {
        let url = self.url("/api/delete");
        let body = serde_json::json!({ "model": model });
        self.retrying(DELETE, &url, || {
            self.send(
                self.http.delete(&url).json(&body),
                "DELETE",
                &url,
                self.config.timeout,
            )?;
            Ok(())
        })
    }

    /// `HEAD /api/blobs/<digest>`: whether the server already has the blob.
    pub fn blob_exists(&self, digest: &BlobDigest) -> Result<bool> {
        let url = self.url(&format!("/api/blobs/{digest}"));
        self.retrying(QUICK, &url, || {
            match self.send(self.http.head(&url), "HEAD", &url, self.config.timeout) {
                Ok(_) => Ok(true),
                Err(ErrorKind::Api { status: 404, .. }) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Uploads the file at `path` as a blob unless the server has it already, and returns its
    /// digest. The file is hashed and sent in a streaming fashion, never read into memory whole.
    pub fn push_blob(&self, path: &Path) -> Result<BlobDigest> {
        let digest = BlobDigest::of_file(path)?;
        if self.blob_exists(&digest)? {
            tracing::debug!(%digest, path = %path.display(), "blob already on the server");
            return Ok(digest);
        }
        self.upload_blob(path, &digest)?;
        Ok(digest)
    }

    /// `POST /api/blobs/<digest>` with the file's bytes as the body. The server checks the
    /// digest: a mismatch is a 400 error carrying Ollama's message.
    pub fn upload_blob(&self, path: &Path, digest: &BlobDigest) -> Result<()> {
        let url = self.url(&format!("/api/blobs/{digest}"));
        self.retrying(QUICK, &url, || {
            let io = |source| ErrorKind::Io {
                path: path.to_owned(),
                source,
            };
            let file = File::open(path).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            tracing::debug!(%digest, len, path = %path.display(), "uploading blob");
            let req = self.http.post(&url).body(Body::sized(file, len));
            self.send(req, "POST", &url, self.config.upload_timeout)?;
            Ok(())
        })
    }

    /// `POST /api/create` (streamed): `on_status` sees every status line (`parsing GGUF`, ...,
    /// `success`). Returns the last one.
    pub fn create(
        &self,
        request: &CreateRequest,
        mut on_status: impl FnMut(&ProgressResponse),
    ) -> Result<ProgressResponse> {
        let url = self.url("/api/create");
        let body = with_stream(request, true);
        self.retrying(CHANGE, &url, || {
            let resp = self.send(
                self.http.post(&url).json(&body),
                "POST",
                &url,
                self.config.inference_timeout,
            )?;
            let mut last = None;
            read_ndjson(
                resp,
                &url,
                self.config.inference_timeout,
                |p: ProgressResponse| {
                    on_status(&p);
                    let done = p.status == "success";
                    last = Some(p);
                    done
                },
            )
            .map_err(Failure::from)?;
            last.ok_or_else(|| unreachable_stream(&url))
        })
    }

    /// `POST /api/chat` with `"stream": false`: the whole answer and its metrics.
    pub fn chat(&self, request: &ChatRequest) -> Result<ChatResponse> {
        let url = self.url("/api/chat");
        let body = with_stream(request, false);
        self.retrying(INFERENCE, &url, || {
            let resp = self.send(
                self.http.post(&url).json(&body),
                "POST",
                &url,
                self.config.inference_timeout,
            )?;
            read_json(resp, &url, self.config.inference_timeout)
        })
    }

    /// `POST /api/chat`, streamed: `on_chunk` sees each chunk as it arrives. Returns the final
    /// object with `message.content` set to the whole answer. A stream cut after chunks were
    /// handed to `on_chunk` is reported, not retried.
    pub fn chat_stream(
        &self,
        request: &ChatRequest,
        mut on_chunk: impl FnMut(&ChatResponse),
    ) -> Result<ChatResponse> {
        let url = self.url("/api/chat");
        let body = with_stream(request, true);
        self.retrying(INFERENCE, &url, || {
            let resp = self.send(
                self.http.post(&url).json(&body),
                "POST",
                &url,
                self.config.inference_timeout,
            )?;
            let mut text = String::new();
            let mut last: Option<ChatResponse> = None;
            let mut delivered = false;
            read_ndjson(
                resp,
                &url,
                self.config.inference_timeout,
                |c: ChatResponse| {
                    on_chunk(&c);
                    delivered = true;
                    text.push_str(&c.message.content);
                    let done = c.done;
                    last = Some(c);
                    done
                },
            )
            .map_err(|kind| Failure { kind, delivered })?;
            let mut fin = last.ok_or_else(|| unreachable_stream(&url))?;
            fin.message.content = text;
            Ok(fin)
        })
    }

    /// `POST /api/generate` with `"stream": false`: the whole answer and its metrics.
    pub fn generate(&self, request: &GenerateRequest) -> Result<GenerateResponse> {
        let url = self.url("/api/generate");
        let body = with_stream(request, false);
        self.retrying(INFERENCE, &url, || {
            let resp = self.send(
                self.http.post(&url).json(&body),
                "POST",
                &url,
                self.config.inference_timeout,
            )?;
            read_json(resp, &url, self.config.inference_timeout)
        })
    }

    /// `POST /api/generate`, streamed; like [`chat_stream`](Self::chat_stream).
    pub fn generate_stream(
        &self,
        request: &GenerateRequest,
        mut on_chunk: impl FnMut(&GenerateResponse),
    ) -> Result<GenerateResponse> {
        let url = self.url("/api/generate");
        let body = with_stream(request, true);
        self.retrying(INFERENCE, &url, || {
            let resp = self.send(
                self.http.post(&url).json(&body),
                "POST",
                &url,
                self.config.inference_timeout,
            )?;
            let mut text = String::new();
            let mut last: Option<GenerateResponse> = None;
            let mut delivered = false;
            read_ndjson(
                resp,
                &url,
                self.config.inference_timeout,
                |c: GenerateResponse| {
                    on_chunk(&c);
                    delivered = true;
                    text.push_str(&c.response);
                    let done = c.done;
                    last = Some(c);
                    done
                },
            )
            .map_err(|kind| Failure { kind, delivered })?;
            let mut fin = last.ok_or_else(|| unreachable_stream(&url))?;
            fin.response = text;
            Ok(fin)
        })
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the retry budget is spent.
    fn retrying<T>(
        &self,
        policy: CallPolicy,
        url: &str,
        mut attempt: impl FnMut() -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        let start = Instant::now();
        let mut retries = 0;
        loop {
            match attempt() {
                Ok(v) => return Ok(v),
                Err(f) => {
                    let transient = !f.delivered && is_transient(&f.kind, policy);
                    if !transient || retries >= self.config.max_retries {
                        return Err(Error::new(f.kind, retries, start.elapsed()));
                    }
                    let wait = backoff(self.config.backoff_base, self.config.backoff_max, retries);
                    retries += 1;
                    tracing::warn!(
                        url,
                        error = %f.kind,
                        retry = retries,
                        of = self.config.max_retries,
                        wait_ms = wait.as_millis() as u64,
                        "transient failure talking to Ollama, retrying"
                    );
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// Sends a request; a non-2xx answer becomes [`ErrorKind::Api`] with Ollama's message.
    fn send(
        &self,
        request: RequestBuilder,
        method: &'static str,
        url: &str,
        timeout: Duration,
    ) -> std::result::Result<Response, ErrorKind> {
        tracing::debug!(method, url, "ollama request");
        let resp = request
            .timeout(timeout)
            .send()
            .map_err(|e| classify(e, url, timeout))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let mut body = String::new();
        // Error bodies are small; cap what we read in case a proxy sends a page.
        let _ = resp.take(64 * 1024).read_to_string(&mut body);
        Err(ErrorKind::Api {
            method,
            url: url.to_owned(),
            status: status.as_u16(),
            message: error_message(&body)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()),
        })
    }
}

/// Maps a reqwest error from sending (connecting, waiting for headers).
fn classify(e: reqwest::Error, url: &str, timeout: Duration) -> ErrorKind {
    if e.is_connect() {
        ErrorKind::Unreachable {
            url: url.to_owned(),
            source: e,
        }
    } else if e.is_timeout() {
        ErrorKind::Timeout {
            url: url.to_owned(),
            timeout,
        }
    } else {
        ErrorKind::Http {
            url: url.to_owned(),
            source: e,
        }
    }
}

/// `{"error": "..."}` → the message; other non-empty bodies verbatim.
fn error_message(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct E {
        error: String,
    }
    if let Ok(e) = serde_json::from_str::<E>(body) {
        return Some(e.error);
    }
    let t = body.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn with_stream<T: Serialize>(request: &T, stream: bool) -> serde_json::Value {
    let mut v = serde_json::to_value(request).unwrap_or(serde_json::Value::Null);
    if let Some(map) = v.as_object_mut() {
        map.insert("stream".into(), serde_json::Value::Bool(stream));
    }
    v
}

fn unreachable_stream(url: &str) -> Failure {
    ErrorKind::StreamCut {
        url: url.to_owned(),
        chunks: 0,
        source: None,
    }
    .into()
}

fn is_timeout_io(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
            .is_some_and(reqwest::Error::is_timeout)
}

/// Reads a whole (non-streamed) JSON answer.
fn read_json<T: DeserializeOwned>(
    resp: Response,
    url: &str,
    timeout: Duration,
) -> std::result::Result<T, Failure> {
    let bytes = resp.bytes().map_err(|e| {
        if e.is_timeout() {
            ErrorKind::Timeout {
                url: url.to_owned(),
                timeout,
            }
        } else {
            ErrorKind::StreamCut {
                url: url.to_owned(),
                chunks: 0,
                source: Some(std::io::Error::other(e)),
            }
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ErrorKind::InvalidResponse {
            url: url.to_owned(),
            message: format!(
                "{e} in {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
        }
        .into()
    })
}

/// Reads NDJSON objects until `on_item` returns true (the final object). An `{"error"}` line
/// is [`ErrorKind::Stream`]; the end of the body or a broken connection before the final
/// object is [`ErrorKind::StreamCut`].
fn read_ndjson<T: DeserializeOwned>(
    resp: Response,
    url: &str,
    timeout: Duration,
    mut on_item: impl FnMut(T) -> bool,
) -> std::result::Result<(), ErrorKind> {
    let mut reader = BufReader::new(resp);
    let mut line = Vec::new();
    let mut chunks = 0;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| {
            if is_timeout_io(&e) {
                ErrorKind::Timeout {
                    url: url.to_owned(),
                    timeout,
                }
            } else {
                ErrorKind::StreamCut {
                    url: url.to_owned(),
                    chunks,
                    source: Some(e),
                }
            }
        })?;
        let unterminated =
            !line.ends_with(b"\n") && serde_json::from_slice::<serde_json::Value>(&line).is_err();
        if n == 0 || unterminated {
            return Err(ErrorKind::StreamCut {
                url: url.to_owned(),
                chunks,
                source: None,
            });
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ErrorKind::InvalidResponse {
                url: url.to_owned(),
                message: format!("bad NDJSON line ({e}): {text:?}"),
            })?;
        if let Some(msg) = value.get("error").and_then(|m| m.as_str()) {
            return Err(ErrorKind::Stream {
                url: url.to_owned(),
                message: msg.to_owned(),
            });
        }
        let item: T = serde_json::from_value(value).map_err(|e| ErrorKind::InvalidResponse {
            url: url.to_owned(),
            message: format!("unexpected object ({e}): {text:?}"),
        })?;
        chunks += 1;
        if on_item(item) {
            return Ok(());
        }
    }
}
