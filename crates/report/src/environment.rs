//! The environment section: where and with what the numbers were measured.

use std::collections::BTreeSet;

use crate::bench::HF_PEFT;
use crate::peer_run::PeerRunResult;
use crate::tables::ReportInputs;

/// Facts about the machine and software behind a report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Environment {
    /// `(name, version)` of the tools, e.g. `("tunebench", "0.1.0")`; peer results and `hf-peft`
    /// runs add `torch`.
    pub versions: Vec<(String, String)>,
    /// `git rev-parse HEAD` of the source tree, when known.
    pub git_commit: Option<String>,
    /// When the report was made (UTC, RFC 3339).
    pub generated: String,
    /// CPU / threads / memory / OS of the runs (distinct values).
    pub machines: Vec<String>,
    /// Backends of the runs (distinct).
    pub backends: Vec<String>,
    /// Config hashes of the runs (distinct).
    pub config_hashes: Vec<String>,
    /// Base models of the runs (distinct).
    pub bases: Vec<String>,
    /// How evaluations reached their engine.
    pub engines: Vec<String>,
}

impl Environment {
    /// Collects the distinct machines, backends, hashes and engines of `inputs`; `versions`,
    /// `git_commit` and `generated` come from the caller.
    pub fn collect(
        inputs: &ReportInputs,
        versions: Vec<(String, String)>,
        git_commit: Option<String>,
        generated: String,
    ) -> Self {
        let distinct = |f: &dyn Fn(&crate::runs::Run) -> String| {
            inputs
                .runs
                .iter()
                .map(f)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        };
        let mut versions = versions;
        let mut torch: BTreeSet<String> = inputs
            .peers
            .iter()
            .filter(|p| !p.torch.is_empty())
            .map(|p| format!("{} ({} threads)", p.torch, p.threads))
            .collect();
        // `train hf-peft` runs keep the peer's torch version in their result file.
        for run in inputs.runs.iter().filter(|r| r.summary.method == HF_PEFT) {
            match PeerRunResult::load(&run.dir) {
                Ok(r) => {
                    torch.insert(format!("{} ({} threads)", r.torch, r.threads));
                }
                Err(e) => tracing::warn!(run = %run.dir.display(), "no torch version: {e}"),
            }
        }
        for t in torch {
            versions.push(("torch (hf-peft peer)".into(), t));
        }
        Self {
            versions,
            git_commit,
            generated,
            machines: distinct(&|r| {
                let m = &r.summary.machine;
                format!(
                    "{}, {} threads, {:.1} GiB, {}",
                    m.cpu,
                    m.threads,
                    m.memory_mib / 1024.0,
                    m.os
                )
            }),
            backends: distinct(&|r| r.summary.backend.clone()),
            config_hashes: distinct(&|r| r.summary.config_hash.clone()),
            bases: distinct(&|r| r.summary.base.clone()),
            engines: inputs.engine_notes.clone(),
        }
    }

    /// `(label, value)` rows for rendering; missing facts read "not recorded".
    pub fn rows(&self) -> Vec<(String, String)> {
        let list = |v: &[String]| {
            if v.is_empty() {
                "not recorded".to_string()
            } else {
                v.join("; ")
            }
        };
        let mut rows = vec![
            ("generated".to_string(), self.generated.clone()),
            (
                "git commit".to_string(),
                self.git_commit
                    .clone()
                    .unwrap_or_else(|| "not recorded".into()),
            ),
            ("machine".to_string(), list(&self.machines)),
            ("backend".to_string(), list(&self.backends)),
            ("base model".to_string(), list(&self.bases)),
            ("config hash".to_string(), list(&self.config_hashes)),
            ("evaluation engine".to_string(), list(&self.engines)),
        ];
        rows.extend(self.versions.iter().cloned());
        rows
    }
}
