//! The benchmark driver: each method trains in its own process (so peak-memory figures don't
//! mix), interleaved (peft, unsloth, hf-peft, peft, ...) so slow drifts of the machine hit every
//! method alike. tunebench trainers run as `<tunebench> train <method> --config FILE
//! [--max-steps N] --no-progress`, the HF+PEFT peer as `<python> <peer script> --config FILE
//! [--steps N]`. A method that fails (for instance a trainer that does not exist yet) is
//! recorded with its error and the rest goes on.
//!
//! Output in the bench folder: `bench.json` (every attempt, rewritten after each one),
//! `peers.jsonl` (the peer's result lines), `logs/<k>-<method>.log` (each process's stdout and
//! stderr).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tb_gguf::fsio::write_atomic;
use tb_train::{ExperimentConfig, Machine, TrainOutcome};

use crate::error::{io, Error, Result};
use crate::fsio::{median, read_json};
use crate::history::HistoryRow;
use crate::runs::{load_run, parse_peer_output, PeerResult};
use crate::tables::format_number;

/// The file in the bench folder holding [`BenchOutcome`].
pub const BENCH_FILE: &str = "bench.json";

/// The HF+PEFT peer's method name.
pub const HF_PEFT: &str = "hf-peft";

/// The backend recorded for the HF+PEFT peer: `benches/peers/hf_peft.py` trains with PyTorch
/// on the CPU.
pub const PEER_BACKEND: &str = "torch-cpu";

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchPlan {
    /// Experiment file.
    pub config: PathBuf,
    /// Methods in interleaving order.
    pub methods: Vec<String>,
    /// Runs per method.
    pub repeats: usize,
    /// Optimizer steps per run (`--max-steps` / `--steps`); `None` = the config's (the peer's
    /// default is 10).
    pub steps: Option<usize>,
    /// The `tunebench` executable.
    pub tunebench: PathBuf,
    /// Python interpreter for the peer.
    pub python: String,
    /// `benches/peers/hf_peft.py`.
    pub peer_script: PathBuf,
    /// Bench folder (`reports/bench-<utc>/`).
    pub out_dir: PathBuf,
}

/// One process run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// Method.
    pub method: String,
    /// 1-based repeat.
    pub repeat: usize,
    /// Whether it produced a result.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// Wall seconds of the process.
    pub process_s: f64,
    /// Run folder (tunebench trainers).
    pub run_dir: Option<PathBuf>,
    /// Run id (folder name, or `<bench>-hf-peft-<k>` for the peer).
    pub run_id: String,
    /// Trained tokens/s.
    pub tokens_per_s: Option<f64>,
    /// Loss-bearing tokens/s.
    pub loss_tokens_per_s: Option<f64>,
    /// Peak RSS, MiB.
    pub peak_rss_mib: Option<f64>,
    /// Final training loss.
    pub final_loss: Option<f64>,
    /// Config hash.
    pub config_hash: Option<String>,
    /// Machine fingerprint.
    pub machine: Option<String>,
    /// Backend of the run (`flex`, `cuda+nf4`; [`PEER_BACKEND`] for the peer); absent in
    /// `bench.json` files written before it was recorded.
    pub backend: Option<String>,
    /// Log file.
    pub log: PathBuf,
}

/// Medians and ratios of one method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodStats {
    /// Method.
    pub method: String,
    /// Successful runs.
    pub ok: usize,
    /// Failed runs.
    pub failed: usize,
    /// Median trained tokens/s.
    pub tokens_per_s: Option<f64>,
    /// Median loss-bearing tokens/s.
    pub loss_tokens_per_s: Option<f64>,
    /// Median peak RSS, MiB.
    pub peak_rss_mib: Option<f64>,
    /// tokens/s ÷ peft's.
    pub speed_vs_peft: Option<f64>,
    /// tokens/s ÷ hf-peft's.
    pub speed_vs_hf_peft: Option<f64>,
    /// peak RSS ÷ peft's.
    pub memory_vs_peft: Option<f64>,
    /// peak RSS ÷ hf-peft's.
    pub memory_vs_hf_peft: Option<f64>,
}

/// Everything a bench produced: `bench.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BenchOutcome {
    /// Every attempt, in run order.
    pub attempts: Vec<Attempt>,
    /// Per-method medians and ratios.
    pub stats: Vec<MethodStats>,
    /// The peer's results.
    pub peers: Vec<PeerResult>,
}

impl BenchOutcome {
    /// Reads `dir/bench.json`.
    ///
    /// # Errors
    /// [`Error::Io`] or, for a malformed file or a missing field, [`Error::Parse`] naming the
    /// file and (in serde's message) the field.
    pub fn load(dir: &Path) -> Result<Self> {
        read_json(&dir.join(BENCH_FILE))
    }

    /// Failed attempts.
    pub fn failed(&self) -> usize {
        self.attempts.iter().filter(|a| !a.ok).count()
    }

    /// History rows of the successful attempts.
    pub fn history_rows(&self, commit: &str, timestamp: &str) -> Vec<HistoryRow> {
        self.attempts
            .iter()
            .filter(|a| a.ok)
            .map(|a| HistoryRow {
                commit: commit.to_string(),
                timestamp: timestamp.to_string(),
                machine: a.machine.clone().unwrap_or_default(),
                config_hash: a.config_hash.clone().unwrap_or_default(),
                method: a.method.clone(),
                run_id: a.run_id.clone(),
                tokens_per_s: a.tokens_per_s.unwrap_or(f64::NAN),
                peak_rss_mib: a.peak_rss_mib.unwrap_or(f64::NAN),
                final_loss: a.final_loss,
                backend: a.backend.clone().unwrap_or_default(),
            })
            .collect()
    }

    /// A Markdown table of the medians and ratios, then the failures.
    pub fn table(&self) -> String {
        let f = |v: Option<f64>| v.map_or("not measured".into(), format_number);
        let r = |v: Option<f64>| v.map_or("—".into(), |x| format!("{x:.2}×"));
        let mut out = String::from(
            "| method | ok/runs | tokens/s | loss tokens/s | peak RSS MiB | speed × peft | speed × hf-peft | memory × peft | memory × hf-peft |\n|---|---|---|---|---|---|---|---|---|\n",
        );
        for s in &self.stats {
            out.push_str(&format!(
                "| {} | {}/{} | {} | {} | {} | {} | {} | {} | {} |\n",
                s.method,
                s.ok,
                s.ok + s.failed,
                f(s.tokens_per_s),
                f(s.loss_tokens_per_s),
                f(s.peak_rss_mib),
                r(s.speed_vs_peft),
                r(s.speed_vs_hf_peft),
                r(s.memory_vs_peft),
                r(s.memory_vs_hf_peft),
            ));
        }
        for a in self.attempts.iter().filter(|a| !a.ok) {
            out.push_str(&format!(
                "\nFAILED {} #{}: {} (log: {})",
                a.method,
                a.repeat,
                a.error.as_deref().unwrap_or("?"),
                a.log.display()
            ));
        }
        out
    }
}

/// Per-method medians and ratios over the successful attempts.
pub fn method_stats(attempts: &[Attempt], methods: &[String]) -> Vec<MethodStats> {
    let med = |m: &str, f: fn(&Attempt) -> Option<f64>| {
        let v: Vec<f64> = attempts
            .iter()
            .filter(|a| a.ok && a.method == m)
            .filter_map(f)
            .collect();
        median(&v)
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    };
    let peft_tps = med("peft", |a| a.tokens_per_s);
    let hf_tps = med(HF_PEFT, |a| a.tokens_per_s);
    let peft_rss = med("peft", |a| a.peak_rss_mib);
    let hf_rss = med(HF_PEFT, |a| a.peak_rss_mib);
    methods
        .iter()
        .map(|m| {
            let tps = med(m, |a| a.tokens_per_s);
            let rss = med(m, |a| a.peak_rss_mib);
            MethodStats {
                method: m.clone(),
                ok: attempts.iter().filter(|a| a.ok && &a.method == m).count(),
                failed: attempts.iter().filter(|a| !a.ok && &a.method == m).count(),
                tokens_per_s: tps,
                loss_tokens_per_s: med(m, |a| a.loss_tokens_per_s),
                peak_rss_mib: rss,
                speed_vs_peft: ratio(tps, peft_tps),
                speed_vs_hf_peft: ratio(tps, hf_tps),
                memory_vs_peft: ratio(rss, peft_rss),
                memory_vs_hf_peft: ratio(rss, hf_rss),
            }
        })
        .collect()
}

fn failure_line(stderr: &str, stdout: &str) -> String {
    let pick = |s: &str| {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .rfind(|l| l.to_ascii_lowercase().contains("error"))
            .or_else(|| s.lines().map(str::trim).rfind(|l| !l.is_empty()))
            .map(|l| l.chars().take(300).collect::<String>())
    };
    pick(stderr)
        .or_else(|| pick(stdout))
        .unwrap_or_else(|| "no output".into())
}

fn run_logged(cmd: &mut Command, log: &Path) -> Result<(bool, String, String, f64)> {
    let t0 = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| Error::Input(format!("could not start {:?}: {e}", cmd.get_program())))?;
    let secs = t0.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = format!(
        "$ {cmd:?}\nexit: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    write_atomic(log, text.as_bytes())?;
    Ok((out.status.success(), stdout, stderr, secs))
}

fn trainer_attempt(plan: &BenchPlan, attempt: &mut Attempt) -> Result<()> {
    let mut cmd = Command::new(&plan.tunebench);
    cmd.arg("train")
        .arg(&attempt.method)
        .arg("--config")
        .arg(&plan.config);
    if let Some(n) = plan.steps {
        cmd.arg("--max-steps").arg(n.to_string());
    }
    if attempt.method == "unsloth" {
        // Timing covers training only: the experiment's `[export] quants` are not written.
        cmd.arg("--gguf").arg("none");
    }
    cmd.arg("--no-progress").arg("--json");
    let (ok, stdout, stderr, secs) = match run_logged(&mut cmd, &attempt.log) {
        Ok(r) => r,
        Err(e) => {
            attempt.error = Some(e.to_string());
            return Ok(());
        }
    };
    attempt.process_s = secs;
    if !ok {
        attempt.error = Some(failure_line(&stderr, &stdout));
        return Ok(());
    }
    let dir = match TrainOutcome::from_child_stdout(&stdout) {
        Ok(outcome) => outcome.run,
        Err(e) => {
            attempt.error = Some(e);
            return Ok(());
        }
    };
    match load_run(&dir) {
        Ok(run) => {
            let s = &run.summary;
            attempt.ok = true;
            attempt.run_id = s.run_id.clone();
            attempt.tokens_per_s = Some(s.tokens_per_s);
            attempt.loss_tokens_per_s = Some(s.loss_tokens_per_s);
            attempt.peak_rss_mib = Some(s.peak_rss_mib);
            attempt.final_loss = Some(s.final_train_loss);
            attempt.config_hash = Some(s.config_hash.clone());
            attempt.machine = Some(s.machine.fingerprint());
            attempt.backend = Some(s.backend.clone());
        }
        Err(e) => attempt.error = Some(e.to_string()),
    }
    attempt.run_dir = Some(dir);
    Ok(())
}

/// File of the bench folder that lists the peer's batches.
pub const PEER_BATCHES: &str = "peer-batches.json";

/// Measured steps of a peer run: the plan's, else the peer's default.
fn peer_steps(plan: &BenchPlan) -> usize {
    plan.steps.unwrap_or(10)
}

/// Writes [`PEER_BATCHES`]: the record ids of the PEFT-style trainer's first steps (one warm-up
/// step and the measured ones), so that the HF+PEFT peer trains on the same examples in the same
/// padded batches instead of its own shuffle; returns its path.
fn write_peer_batches(plan: &BenchPlan) -> Result<PathBuf> {
    let config = ExperimentConfig::load(&plan.config)?;
    let steps = tb_train::session::padded_step_ids(&config, peer_steps(plan) + 1)?;
    let path = plan.out_dir.join(PEER_BATCHES);
    let json = serde_json::json!({
        "what": "record ids per optimizer step (its micro-batches) of tunebench's PEFT-style trainer",
        "config": plan.config,
        "steps": steps,
    });
    let text = serde_json::to_vec_pretty(&json).map_err(|e| Error::Input(e.to_string()))?;
    write_atomic(&path, &text)?;
    Ok(path)
}

fn peer_attempt(
    plan: &BenchPlan,
    batches: &Path,
    attempt: &mut Attempt,
    peers: &mut Vec<PeerResult>,
    hash: &str,
) -> Result<()> {
    let mut cmd = Command::new(&plan.python);
    cmd.arg(&plan.peer_script).arg("--config").arg(&plan.config);
    cmd.arg("--steps").arg(peer_steps(plan).to_string());
    cmd.arg("--batches").arg(batches);
    let (ok, stdout, stderr, secs) = match run_logged(&mut cmd, &attempt.log) {
        Ok(r) => r,
        Err(e) => {
            attempt.error = Some(e.to_string());
            return Ok(());
        }
    };
    attempt.process_s = secs;
    if !ok {
        attempt.error = Some(failure_line(&stderr, &stdout));
        return Ok(());
    }
    let mut p = match parse_peer_output(&stdout) {
        Ok(Some(p)) => p,
        Ok(None) => {
            attempt.error = Some("the peer printed no JSON result line".into());
            return Ok(());
        }
        Err(e) => {
            attempt.error = Some(format!("the peer's JSON result line is not a result: {e}"));
            return Ok(());
        }
    };
    if p.method.is_empty() {
        p.method = HF_PEFT.into();
    }
    p.run_id = attempt.run_id.clone();
    attempt.ok = true;
    attempt.tokens_per_s = Some(p.tokens_per_s);
    attempt.loss_tokens_per_s = Some(p.loss_tokens_per_s);
    attempt.peak_rss_mib = Some(p.peak_rss_mib);
    attempt.final_loss = p.last_loss;
    attempt.config_hash = Some(hash.to_string());
    attempt.machine = Some(Machine::probe().fingerprint());
    attempt.backend = Some(PEER_BACKEND.into());
    peers.push(p);
    Ok(())
}

/// The hash the trainers record for this plan: the experiment file with `--max-steps` applied.
pub fn plan_config_hash(plan: &BenchPlan) -> Result<String> {
    let mut config = ExperimentConfig::load(&plan.config)?;
    if let Some(n) = plan.steps {
        config.train.max_steps = n;
    }
    config.validate()?;
    Ok(config.hash())
}

fn save(plan: &BenchPlan, outcome: &BenchOutcome) -> Result<()> {
    let path = plan.out_dir.join(BENCH_FILE);
    let json = serde_json::to_vec_pretty(outcome).map_err(|e| Error::Parse {
        path: path.clone(),
        line: 0,
        message: e.to_string(),
    })?;
    write_atomic(&path, &json)?;
    let mut lines = String::new();
    for p in &outcome.peers {
        lines.push_str(&serde_json::to_string(p).unwrap_or_default());
        lines.push('\n');
    }
    Ok(write_atomic(
        &plan.out_dir.join("peers.jsonl"),
        lines.as_bytes(),
    )?)
}

/// Runs the plan; `on_attempt` sees each attempt as it finishes. Per-method failures are
/// recorded in the outcome, not returned as errors.
pub fn run_bench(plan: &BenchPlan, on_attempt: &mut dyn FnMut(&Attempt)) -> Result<BenchOutcome> {
    if plan.methods.is_empty() || plan.repeats == 0 {
        return Err(Error::Input(
            "nothing to run: give methods and repeats ≥ 1".into(),
        ));
    }
    let hash = plan_config_hash(plan)?;
    let logs = plan.out_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io(&logs))?;
    let bench_id = plan
        .out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bench".into());
    let batches = match plan.methods.iter().any(|m| m == HF_PEFT) {
        true => Some(write_peer_batches(plan)?),
        false => None,
    };
    let mut outcome = BenchOutcome::default();
    let mut k = 0;
    for repeat in 1..=plan.repeats {
        for method in &plan.methods {
            k += 1;
            let mut attempt = Attempt {
                method: method.clone(),
                repeat,
                log: logs.join(format!("{k:02}-{method}.log")),
                ..Attempt::default()
            };
            tracing::info!(method = %method, repeat, "bench: starting");
            if let (true, Some(batches)) = (method == HF_PEFT, &batches) {
                attempt.run_id = format!("{bench_id}-{HF_PEFT}-{repeat}");
                peer_attempt(plan, batches, &mut attempt, &mut outcome.peers, &hash)?;
            } else {
                trainer_attempt(plan, &mut attempt)?;
            }
            on_attempt(&attempt);
            outcome.attempts.push(attempt);
            outcome.stats = method_stats(&outcome.attempts, &plan.methods);
            save(plan, &outcome)?;
        }
    }
    Ok(outcome)
}
