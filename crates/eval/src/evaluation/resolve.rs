//! Which engine answers: the Ollama probe, and the engine's name for reports.

use std::time::Duration;

use super::{EngineChoice, EngineKind, Result};
use crate::ollama::{ClientConfig, OllamaClient};

/// The engine a run will use, and why.
#[derive(Debug, Clone)]
pub struct ResolvedEngine {
    /// The engine.
    pub kind: EngineKind,
    /// A sentence for logs and `summary.json`.
    pub reason: String,
    /// What answers, for reports ([`super::Summary::engine_name`]): `ollama <version>`,
    /// `ollama-compat (llama.cpp)` or `embedded`.
    pub name: String,
    /// The client, for Ollama.
    pub client: Option<OllamaClient>,
}

/// Picks the engine: Ollama when `/api/version` answers at `OLLAMA_HOST` (or `host`), else
/// embedded for [`EngineChoice::Auto`]; `Ollama` fails when the server does not answer.
pub fn resolve_engine(choice: EngineChoice, host: Option<&str>) -> Result<ResolvedEngine> {
    let host = host
        .map(str::to_owned)
        .unwrap_or_else(|| std::env::var("OLLAMA_HOST").unwrap_or_default());
    if choice == EngineChoice::Embedded {
        return Ok(ResolvedEngine {
            kind: EngineKind::Embedded,
            reason: "the embedded engine was asked for".into(),
            name: EMBEDDED_NAME.into(),
            client: None,
        });
    }
    let probe_config = ClientConfig {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        max_retries: if choice == EngineChoice::Ollama { 3 } else { 0 },
        ..ClientConfig::default()
    };
    let probe = OllamaClient::with_config(&host, probe_config)?;
    match probe.version() {
        Ok(v) => Ok(ResolvedEngine {
            kind: EngineKind::Ollama,
            reason: format!("Ollama {v} answered at {}", probe.base_url()),
            name: ollama_engine_name(&v),
            client: Some(OllamaClient::with_config(&host, ClientConfig::default())?),
        }),
        Err(e) if choice == EngineChoice::Auto => Ok(ResolvedEngine {
            kind: EngineKind::Embedded,
            reason: format!(
                "no Ollama at {} ({e}); using the embedded engine",
                probe.base_url()
            ),
            name: EMBEDDED_NAME.into(),
            client: None,
        }),
        Err(e) => Err(e.into()),
    }
}

/// [`ResolvedEngine::name`] of the embedded engine.
const EMBEDDED_NAME: &str = "embedded";

/// [`ResolvedEngine::name`] of the server whose `/api/version` answered `version`:
/// tools/ollama-compat answers `<ollama version>-compat` and runs llama.cpp.
fn ollama_engine_name(version: &str) -> String {
    if version.ends_with("-compat") {
        "ollama-compat (llama.cpp)".into()
    } else {
        format!("ollama {version}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_compat_is_named_apart_from_a_real_ollama() {
        assert_eq!(
            ollama_engine_name("0.12.11-compat"),
            "ollama-compat (llama.cpp)"
        );
        assert_eq!(ollama_engine_name("0.12.3"), "ollama 0.12.3");
    }

    #[test]
    fn the_embedded_engine_is_named_embedded() {
        let e = resolve_engine(EngineChoice::Embedded, None).unwrap();
        assert_eq!(
            (e.kind, e.name.as_str()),
            (EngineKind::Embedded, "embedded")
        );
    }
}
