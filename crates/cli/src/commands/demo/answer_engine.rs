//! Which engine answers the demo's questions: an Ollama that answers at `OLLAMA_HOST`; else
//! `tools/ollama-compat` (llama.cpp behind Ollama's API) started for the demo on a free local
//! port and stopped at its end; else, where Node 20+ or the tool's npm packages cannot be had,
//! the embedded engine. Answers then go through `/api/chat` whenever an Ollama-protocol server
//! is there, and the report names which one it was (`tunebench eval` records it).

use std::path::Path;

use tb_eval::compat::CompatServer;
use tb_eval::evaluation::{resolve_engine, EngineChoice, EngineKind};

/// The engine the demo's evaluations use.
pub(super) struct AnswerEngine {
    /// `OLLAMA_HOST` value of the Ollama-protocol server, `None`: the embedded engine.
    pub host: Option<String>,
    /// What answers, for the demo's output.
    pub label: String,
    /// The server started for the demo (stopped when dropped).
    _server: Option<CompatServer>,
}

impl AnswerEngine {
    /// The embedded engine only.
    fn embedded(why: String) -> Self {
        Self {
            host: None,
            label: format!("the embedded engine ({why})"),
            _server: None,
        }
    }

    /// `tunebench eval` arguments that select this engine (`--engine ollama` so a server that
    /// stops answering midway is an error, never a silent switch of engine).
    pub fn eval_flags(&self) -> [&'static str; 2] {
        match self.host {
            Some(_) => ["--engine", "ollama"],
            None => ["--engine", "embedded"],
        }
    }

    /// Environment of the evaluation children.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.host
            .iter()
            .map(|h| ("OLLAMA_HOST", h.clone()))
            .collect()
    }
}

/// Chooses the engine (`no_ollama`: the embedded engine, without probing). `compat_dir` is
/// `tools/ollama-compat`; its model store goes into `state_dir/ollama-models`, its log to
/// `state_dir/ollama-compat.log`.
pub(super) fn answer_engine(no_ollama: bool, compat_dir: &Path, state_dir: &Path) -> AnswerEngine {
    if no_ollama {
        return AnswerEngine::embedded("--no-ollama".into());
    }
    match resolve_engine(EngineChoice::Auto, None) {
        Ok(e) if e.kind == EngineKind::Ollama => {
            if let Some(client) = e.client {
                return AnswerEngine {
                    host: Some(client.base_url().to_owned()),
                    label: e.reason,
                    _server: None,
                };
            }
        }
        Ok(e) => tracing::info!("{}", e.reason),
        Err(e) => tracing::warn!("probing OLLAMA_HOST: {e:#}"),
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let log = state_dir.join("ollama-compat.log");
    let started = CompatServer::provision(compat_dir).and_then(|()| {
        CompatServer::start(compat_dir, &state_dir.join("ollama-models"), threads, &log)
    });
    match started {
        Ok(server) => AnswerEngine {
            host: Some(server.host().to_owned()),
            label: format!(
                "ollama-compat (llama.cpp) started at {} (log: {})",
                server.host(),
                log.display()
            ),
            _server: Some(server),
        },
        Err(e) => {
            tracing::warn!("{e}; answering with the embedded engine");
            AnswerEngine::embedded(format!("no Ollama, and tools/ollama-compat: {e}"))
        }
    }
}
