//! Request and response bodies, with Ollama's field names (`api/types.go`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System prompt.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    #[serde(default)]
    pub content: String,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// Model options (`options` in chat/generate, `parameters` in create). Unset fields take the
/// model's parameters, then Ollama's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Sampling temperature (Ollama default 0.8; 0 is greedy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Random seed, for reproducible sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Maximum tokens to generate (-1: until a stop).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_predict: Option<i32>,
    /// Context window in tokens. Set it: Ollama's default depends on its version and VRAM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_ctx: Option<u32>,
    /// Stop strings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    /// Nucleus sampling threshold (default 0.9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Top-k sampling (default 40).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Min-p sampling (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    /// Repetition penalty (default 1.0 in current Ollama).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
}

/// `POST /api/chat` (the client sets `stream`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatRequest {
    /// Model name, e.g. `smol:latest`.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Structured output: `"json"` or a JSON schema the answer must follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<serde_json::Value>,
    /// Options for this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
    /// How long the model stays loaded afterwards (`"5m"`, `"0"`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<String>,
}

/// `POST /api/generate` (the client sets `stream`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GenerateRequest {
    /// Model name.
    pub model: String,
    /// The prompt (templated by Ollama unless `raw`).
    pub prompt: String,
    /// Overrides the model's system prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Overrides the model's template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Structured output: `"json"` or a JSON schema the answer must follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<serde_json::Value>,
    /// Send the prompt to the model as is, without the template.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub raw: bool,
    /// Options for this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
    /// How long the model stays loaded afterwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<String>,
}

/// `POST /api/create`, JSON form (Ollama ≥ 0.5.5): a model from uploaded blobs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateRequest {
    /// Name of the new model.
    pub model: String,
    /// File name → blob digest (`sha256:<hex>`), e.g. `{"model.gguf": "sha256:..."}`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// LoRA adapter file name → blob digest (`sha256:<hex>`), the JSON form of a Modelfile's
    /// `ADAPTER` line: llama.cpp LoRA GGUFs applied on top of the model in `files`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub adapters: BTreeMap<String, String>,
    /// An existing model to build on instead of `files`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Go template for prompts; Ollama detects one from the GGUF when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Default system prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Default options (stop strings, num_ctx, temperature...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Options>,
}

/// A status line of `/api/create` (and pull/push).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ProgressResponse {
    /// e.g. `parsing GGUF`, `writing manifest`, `success`.
    #[serde(default)]
    pub status: String,
    /// Layer digest, for progress lines.
    #[serde(default)]
    pub digest: Option<String>,
    /// Total bytes, for progress lines.
    #[serde(default)]
    pub total: Option<u64>,
    /// Completed bytes, for progress lines.
    #[serde(default)]
    pub completed: Option<u64>,
}

/// The timing fields of a final chat/generate chunk. Ollama reports durations in ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct GenerationMetrics {
    /// Whole request, ns.
    #[serde(default)]
    pub total_duration: Option<u64>,
    /// Loading the model, ns.
    #[serde(default)]
    pub load_duration: Option<u64>,
    /// Prompt tokens evaluated.
    #[serde(default)]
    pub prompt_eval_count: Option<u64>,
    /// Prompt evaluation, ns.
    #[serde(default)]
    pub prompt_eval_duration: Option<u64>,
    /// Tokens generated.
    #[serde(default)]
    pub eval_count: Option<u64>,
    /// Generation, ns.
    #[serde(default)]
    pub eval_duration: Option<u64>,
}

fn per_second(count: Option<u64>, ns: Option<u64>) -> Option<f64> {
    match (count, ns) {
        (Some(c), Some(d)) if d > 0 => Some(c as f64 / d as f64 * 1e9),
        _ => None,
    }
}

impl GenerationMetrics {
    /// Prompt (prefill) speed: `prompt_eval_count / prompt_eval_duration · 1e9`.
    pub fn prompt_tokens_per_second(&self) -> Option<f64> {
        per_second(self.prompt_eval_count, self.prompt_eval_duration)
    }

    /// Generation (decode) speed: `eval_count / eval_duration · 1e9`.
    pub fn eval_tokens_per_second(&self) -> Option<f64> {
        per_second(self.eval_count, self.eval_duration)
    }

    /// `total_duration` as a [`Duration`].
    pub fn total(&self) -> Option<Duration> {
        self.total_duration.map(Duration::from_nanos)
    }

    /// `load_duration` as a [`Duration`].
    pub fn load(&self) -> Option<Duration> {
        self.load_duration.map(Duration::from_nanos)
    }
}

/// A chat chunk or, with `done`, the final answer. From the client's chat calls, `message`
/// holds the whole answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChatResponse {
    /// The model name as requested.
    #[serde(default)]
    pub model: String,
    /// RFC 3339 time stamp.
    #[serde(default)]
    pub created_at: String,
    /// The (partial) answer.
    pub message: Message,
    /// Whether this is the final object.
    #[serde(default)]
    pub done: bool,
    /// Why generation stopped (`stop`, `length`, `load`, `unload`), on the final object.
    #[serde(default)]
    pub done_reason: Option<String>,
    /// Timings, on the final object.
    #[serde(flatten)]
    pub metrics: GenerationMetrics,
}

/// A generate chunk or, with `done`, the final answer. From the client's generate calls,
/// `response` holds the whole answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GenerateResponse {
    /// The model name as requested.
    #[serde(default)]
    pub model: String,
    /// RFC 3339 time stamp.
    #[serde(default)]
    pub created_at: String,
    /// The (partial) answer.
    #[serde(default)]
    pub response: String,
    /// Whether this is the final object.
    #[serde(default)]
    pub done: bool,
    /// Why generation stopped, on the final object.
    #[serde(default)]
    pub done_reason: Option<String>,
    /// Prompt and answer token ids (absent with `raw`).
    #[serde(default)]
    pub context: Option<Vec<i64>>,
    /// Timings, on the final object.
    #[serde(flatten)]
    pub metrics: GenerationMetrics,
}

/// `details` of a model in `/api/tags` and `/api/show`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ModelDetails {
    /// Model it was created from.
    #[serde(default)]
    pub parent_model: String,
    /// `gguf` or `safetensors`.
    #[serde(default)]
    pub format: String,
    /// Architecture, e.g. `llama`.
    #[serde(default)]
    pub family: String,
    /// Architectures.
    #[serde(default)]
    pub families: Option<Vec<String>>,
    /// Human-readable parameter count, e.g. `134.52M`.
    #[serde(default)]
    pub parameter_size: String,
    /// Quantisation, e.g. `Q4_K_M`.
    #[serde(default)]
    pub quantization_level: String,
}

/// One entry of `GET /api/tags`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ModelSummary {
    /// `name:tag`.
    #[serde(default)]
    pub name: String,
    /// Same as `name` in current Ollama.
    #[serde(default)]
    pub model: String,
    /// RFC 3339 time stamp.
    #[serde(default)]
    pub modified_at: String,
    /// Bytes on disk.
    #[serde(default)]
    pub size: u64,
    /// Manifest digest (hex).
    #[serde(default)]
    pub digest: String,
    /// Format, family, size, quantisation.
    #[serde(default)]
    pub details: ModelDetails,
}

/// `POST /api/show`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ShowResponse {
    /// License text.
    #[serde(default)]
    pub license: Option<String>,
    /// The equivalent Modelfile.
    #[serde(default)]
    pub modelfile: String,
    /// Parameters, one `name value` per line.
    #[serde(default)]
    pub parameters: Option<String>,
    /// The prompt template.
    #[serde(default)]
    pub template: String,
    /// The default system prompt.
    #[serde(default)]
    pub system: Option<String>,
    /// Format, family, size, quantisation.
    #[serde(default)]
    pub details: ModelDetails,
    /// GGUF metadata (large arrays are `null` unless verbose).
    #[serde(default)]
    pub model_info: Option<serde_json::Map<String, serde_json::Value>>,
    /// e.g. `["completion"]`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// RFC 3339 time stamp.
    #[serde(default)]
    pub modified_at: Option<String>,
}
