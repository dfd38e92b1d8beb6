//! Python virtual environments under `target/`.

use std::path::PathBuf;
use std::process::Command;

use crate::{notice, repo_root, run, stamp_matches, write_stamp, ProvisionLock};

/// Name of the stamp written into a venv after its packages installed.
const STAMP: &str = ".tb-requirements";

/// The Python interpreter of the venv `target/<name>` holding exactly `requirements`
/// (pip requirement strings), created and pip-installed on first use.
pub fn python_venv(name: &str, requirements: &[&str]) -> PathBuf {
    let venv = repo_root().join("target").join(name);
    let python = venv.join("bin/python");
    let stamp = venv.join(STAMP);
    let expected = requirements.join("\n");
    if python.exists() && stamp_matches(&stamp, &expected) {
        return python;
    }
    let _lock = ProvisionLock::acquire();
    if python.exists() && stamp_matches(&stamp, &expected) {
        return python;
    }
    notice(&format!(
        "creating the Python venv {} and installing {} (needs python3 with venv and the PyPI registry)",
        venv.display(),
        requirements.join(" ")
    ));
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        &format!("create the venv {}", venv.display()),
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(requirements),
        &format!(
            "pip install {} into {}",
            requirements.join(" "),
            venv.display()
        ),
    );
    write_stamp(&stamp, &expected);
    python
}

/// Python with PyPI's `gguf` reader (0.19.0) and numpy: `target/pyenv-gguf`.
pub fn gguf_python() -> PathBuf {
    python_venv("pyenv-gguf", &["gguf==0.19.0"])
}
