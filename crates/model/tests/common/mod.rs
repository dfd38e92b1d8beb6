//! Shared test plumbing: llama.cpp (node-llama-cpp 3.21.1) as an oracle.

#![allow(
    dead_code,
    clippy::print_stderr,
    reason = "each test binary uses a different subset; installs are announced on stderr"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Installs node-llama-cpp into `tools/node_modules` on first use (see tb-testkit).
pub fn ensure_node_llama_cpp() {
    tb_testkit::node_llama_cpp();
}

/// Runs `tools/oracles/llama_generate.mjs` on `gguf` with a JSON request (see the script).
pub fn llama_cpp(gguf: &Path, request: &serde_json::Value) -> serde_json::Value {
    ensure_node_llama_cpp();
    let mut child = Command::new("node")
        .arg(repo().join("tools/oracles/llama_generate.mjs"))
        .arg(gguf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node must be installed");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(request.to_string().as_bytes())
        .expect("writing the request");
    let out = child.wait_with_output().expect("waiting for the oracle");
    assert!(out.status.success(), "llama.cpp oracle failed");
    serde_json::from_slice(&out.stdout).expect("oracle output is JSON")
}

/// A JSON array of token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}
