//! Node packages: node-llama-cpp (llama.cpp as an oracle) and the Ollama-protocol server.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{notice, repo_root, run, sha256_hex, stamp_matches, write_stamp, ProvisionLock};

/// Name of the stamp written into `node_modules` after a successful `npm ci`.
const STAMP: &str = ".tb-npm-ci.sha256";

/// Makes sure `dir/node_modules` is an install of `dir/package-lock.json`, running
/// `npm ci --no-audit --no-fund` if it is missing, unfinished or from another lock file.
/// Returns `dir`.
///
/// The stamp holds the sha256 of the lock file it was installed from, so editing the lock
/// file reinstalls.
pub fn npm_ci(dir: &Path) -> PathBuf {
    let lock_file = dir.join("package-lock.json");
    let stamp = dir.join("node_modules").join(STAMP);
    let expected = sha256_hex(&lock_file);
    if stamp_matches(&stamp, &expected) {
        return dir.to_path_buf();
    }
    let _lock = ProvisionLock::acquire();
    if stamp_matches(&stamp, &expected) {
        return dir.to_path_buf();
    }
    notice(&format!(
        "installing {}'s pinned npm packages (`npm ci --no-audit --no-fund`; needs Node 20+ and the npm registry)",
        dir.display()
    ));
    run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir),
        &format!("install npm packages in {}", dir.display()),
    );
    write_stamp(&stamp, &expected);
    dir.to_path_buf()
}

/// `tools/`, with node-llama-cpp 3.21.1 installed: the llama.cpp oracles
/// (`tools/oracles/*.mjs`) and its prebuilt `libllama` / `libggml-base`.
pub fn node_llama_cpp() -> PathBuf {
    npm_ci(&repo_root().join("tools"))
}

/// `tools/ollama-compat/`, with its dependencies installed.
pub fn ollama_compat() -> PathBuf {
    npm_ci(&repo_root().join("tools/ollama-compat"))
}

/// Runs the llama.cpp oracle `tools/oracles/<script>` on `model` with `request` on its stdin
/// (node-llama-cpp installed first); returns its stdout. Panics with the oracle's stderr when
/// it fails.
pub fn llama_oracle(script: &str, model: &Path, request: &str) -> Vec<u8> {
    use std::io::Write as _;
    use std::process::Stdio;

    let tools = node_llama_cpp();
    let mut child = Command::new("node")
        .arg(tools.join("oracles").join(script))
        .arg(model)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("FAILED to start node (Node 20+ must be installed): {e}"));
    let mut stdin = child.stdin.take().expect("invariant: stdin is piped");
    stdin
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("FAILED to send the request to {script}: {e}"));
    drop(stdin);
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("FAILED waiting for {script}: {e}"));
    assert!(
        out.status.success(),
        "llama.cpp oracle {script} failed on {} ({}): {}",
        model.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
