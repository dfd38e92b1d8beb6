//! Shared test plumbing: llama.cpp (node-llama-cpp 3.21.1) as an oracle.

#![allow(
    dead_code,
    clippy::print_stderr,
    reason = "each test binary uses a different subset; installs are announced on stderr"
)]

use std::path::{Path, PathBuf};

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
    let out = tb_testkit::llama_oracle("llama_generate.mjs", gguf, &request.to_string());
    serde_json::from_slice(&out).expect("oracle output is JSON")
}

/// A JSON array of token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}
