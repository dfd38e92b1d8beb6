//! Resumable checkpoints: `runs/<id>/checkpoints/step-NNNNNN/` with the trainable tensors, the
//! AdamW moments, the loop counters and `manifest.json` (size and SHA-256 of every other file).
//! Written into a temporary folder, synced and renamed, so a killed run leaves either a whole
//! checkpoint or a `.tmp-step-*` folder that resuming removes; a failed save (a full disk)
//! removes its temporary folder itself. Resuming takes the newest checkpoint that passes the
//! manifest, loads and belongs to the run's config ([`resume_point`]); damaged ones are skipped
//! with a warning naming the file, and a run whose checkpoints are all unusable is an error,
//! never a silent restart from step 0.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use tb_gguf::fsio::{sync_dir, write_atomic};

use crate::error::{io, Error, Result};
use crate::optimizer::{AdamW, AdamWSettings, NamedTensor};
use crate::run_dir::{bytes_sha256, file_sha256};

/// The file listing every other file of a checkpoint; written last.
const MANIFEST: &str = "manifest.json";
/// The files a manifest covers, in the order they are written.
const FILES: [&str; 4] = [
    "trainable.safetensors",
    "optimizer.safetensors",
    "optimizer.json",
    "state.json",
];
/// Prefix of the folder a checkpoint is written into before its rename.
const TMP_PREFIX: &str = ".tmp-step-";

/// One file of a checkpoint as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ManifestEntry {
    /// File name inside the checkpoint folder.
    file: String,
    /// Size in bytes.
    bytes: u64,
    /// SHA-256, hex.
    sha256: String,
}

/// Loop counters saved beside the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Optimizer steps done.
    pub step: usize,
    /// Hash of the config the run was started with.
    pub config_hash: String,
    /// Seconds spent in training steps so far.
    pub train_s: f64,
    /// Real tokens so far.
    pub trained_tokens: usize,
    /// Loss-bearing tokens so far.
    pub loss_tokens: usize,
    /// Batch slots so far.
    pub slots: usize,
    /// Real tokens counted for throughput (after warm-up) so far.
    pub measured_tokens: usize,
    /// Loss-bearing tokens counted for throughput so far.
    pub measured_loss_tokens: usize,
    /// Seconds counted for throughput so far.
    pub measured_s: f64,
    /// Loss of the last step.
    pub last_loss: f64,
}

/// Folder of the checkpoint after `step` steps.
pub fn checkpoint_dir(run: &Path, step: usize) -> PathBuf {
    run.join("checkpoints").join(format!("step-{step:06}"))
}

/// The `step-N` folders of a run, newest first (complete or not: [`verify_checkpoint`] says).
pub fn checkpoint_dirs(run: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let dir = run.join("checkpoints");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<usize>().ok())
        {
            found.push((n, entry.path()));
        }
    }
    found.sort_by_key(|(step, _)| std::cmp::Reverse(*step));
    Ok(found)
}

/// Removes `.tmp-step-*` folders a run killed while saving left behind; returns how many.
pub fn remove_partial_checkpoints(run: &Path) -> Result<usize> {
    let dir = run.join("checkpoints");
    if !dir.is_dir() {
        return Ok(0);
    }
    let mut removed = 0;
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
            tracing::info!(folder = %path.display(), "removed a checkpoint left half-written");
            removed += 1;
        }
    }
    Ok(removed)
}

fn to_bytes(t: &NamedTensor) -> Vec<u8> {
    t.data.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes named f32 tensors as one safetensors file (atomically).
pub fn save_tensors(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    Ok(write_atomic(path, &encode_tensors(path, tensors)?)?)
}

/// The bytes of a safetensors file holding named f32 tensors (`path` names it in errors).
fn encode_tensors(path: &Path, tensors: &[NamedTensor]) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(to_bytes).collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            TensorView::new(Dtype::F32, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| Error::Method(format!("tensor `{}`: {e}", t.name)))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, None)
        .map_err(|e| Error::Method(format!("{}: {e}", path.display())))
}

/// Reads every tensor of an F32 safetensors file, by name.
pub fn load_tensors(path: &Path) -> Result<HashMap<String, NamedTensor>> {
    decode_tensors(path, &std::fs::read(path).map_err(io(path))?)
}

/// Every tensor of the F32 safetensors file `path` whose bytes are `bytes`, by name.
fn decode_tensors(path: &Path, bytes: &[u8]) -> Result<HashMap<String, NamedTensor>> {
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!("`{name}` is {:?}, expected F32", view.dtype())));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(
            name.clone(),
            NamedTensor {
                name,
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

/// Saves params, optimizer state and counters after `state.step` steps.
///
/// # Errors
/// A write error (a full disk names the file being written); the temporary folder is removed
/// then, so the newest complete checkpoint stays the one to resume from.
pub fn save_checkpoint(
    run: &Path,
    params: &[NamedTensor],
    optimizer: &AdamW,
    state: &LoopState,
) -> Result<PathBuf> {
    let final_dir = checkpoint_dir(run, state.step);
    let parent = final_dir.parent().unwrap_or(run).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let tmp = parent.join(format!("{TMP_PREFIX}{:06}", state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    let saved = write_checkpoint_files(&tmp, params, optimizer, state).and_then(|()| {
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))
    });
    if let Err(e) = saved {
        if let Err(cleanup) = std::fs::remove_dir_all(&tmp) {
            tracing::warn!(folder = %tmp.display(), %cleanup, "could not remove a failed checkpoint");
        }
        return Err(e);
    }
    sync_dir(&parent)?;
    Ok(final_dir)
}

/// Writes the files of a checkpoint into `dir`, the manifest (digests of the bytes written,
/// not read back) last.
fn write_checkpoint_files(
    dir: &Path,
    params: &[NamedTensor],
    optimizer: &AdamW,
    state: &LoopState,
) -> Result<()> {
    let mut moments = Vec::with_capacity(2 * params.len());
    for m in &optimizer.exp_avg {
        moments.push(NamedTensor {
            name: format!("exp_avg.{}", m.name),
            ..m.clone()
        });
    }
    for v in &optimizer.exp_avg_sq {
        moments.push(NamedTensor {
            name: format!("exp_avg_sq.{}", v.name),
            ..v.clone()
        });
    }
    let opt_meta = serde_json::json!({ "step": optimizer.step, "settings": optimizer.settings });
    let state_text = serde_json::to_string_pretty(state).map_err(|source| Error::Json {
        path: dir.join("state.json"),
        source,
    })?;
    // One file's bytes at a time: the optimizer moments are twice the trainable tensors.
    let mut entries = Vec::with_capacity(FILES.len());
    let mut put = |file: &str, bytes: Vec<u8>| -> Result<()> {
        write_atomic(&dir.join(file), &bytes)?;
        entries.push(ManifestEntry {
            file: file.to_string(),
            bytes: bytes.len() as u64,
            sha256: bytes_sha256(&bytes),
        });
        Ok(())
    };
    put(FILES[0], encode_tensors(&dir.join(FILES[0]), params)?)?;
    put(FILES[1], encode_tensors(&dir.join(FILES[1]), &moments)?)?;
    put(FILES[2], opt_meta.to_string().into_bytes())?;
    put(FILES[3], state_text.into_bytes())?;
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(&entries).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    Ok(write_atomic(&path, text.as_bytes())?)
}

/// The manifest of the checkpoint in `dir`, checked to list exactly the checkpoint's files.
fn read_manifest(dir: &Path) -> Result<Vec<ManifestEntry>> {
    let manifest = dir.join(MANIFEST);
    let bad = |message: String| Error::Checkpoint {
        path: manifest.clone(),
        message,
    };
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        bad(format!(
            "{e} (a checkpoint is complete only with its manifest)"
        ))
    })?;
    let entries: Vec<ManifestEntry> =
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let listed: Vec<&str> = entries.iter().map(|e| e.file.as_str()).collect();
    if listed != FILES {
        return Err(bad(format!(
            "lists {listed:?}, a checkpoint holds {FILES:?}"
        )));
    }
    Ok(entries)
}

impl ManifestEntry {
    /// Checks the size of the file at `path` against this entry.
    fn check_size(&self, path: &Path, size: u64) -> Result<()> {
        if size == self.bytes {
            return Ok(());
        }
        Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "{size} bytes where the manifest says {} (truncated or overwritten)",
                self.bytes
            ),
        })
    }

    /// Checks the SHA-256 of the file at `path` against this entry.
    fn check_sha256(&self, path: &Path, sha256: &str) -> Result<()> {
        if sha256 == self.sha256 {
            return Ok(());
        }
        Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: "content differs from the SHA-256 in manifest.json (damaged on disk)".into(),
        })
    }
}

/// Checks every file of a checkpoint against its manifest (size, then SHA-256), streaming each
/// file through the hash without keeping it.
///
/// # Errors
/// [`Error::Checkpoint`] naming the missing, truncated or altered file.
pub fn verify_checkpoint(dir: &Path) -> Result<()> {
    for entry in read_manifest(dir)? {
        let path = dir.join(&entry.file);
        let size = std::fs::metadata(&path)
            .map_err(|e| Error::Checkpoint {
                path: path.clone(),
                message: e.to_string(),
            })?
            .len();
        entry.check_size(&path, size)?;
        let (_, sha256) = file_sha256(&path)?;
        entry.check_sha256(&path, &sha256)?;
    }
    Ok(())
}

/// The bytes of a checkpoint's files, in [`FILES`] order, each read from disk once.
struct CheckpointBytes([Vec<u8>; FILES.len()]);

impl CheckpointBytes {
    /// Reads every file of the checkpoint in `dir`, checking each against the manifest (size,
    /// then SHA-256 of the bytes read) when `manifest` is given.
    fn read(dir: &Path, manifest: Option<&[ManifestEntry]>) -> Result<Self> {
        let mut files: [Vec<u8>; FILES.len()] = Default::default();
        for (i, (file, bytes)) in FILES.iter().zip(&mut files).enumerate() {
            let path = dir.join(file);
            *bytes = std::fs::read(&path).map_err(|e| Error::Checkpoint {
                path: path.clone(),
                message: e.to_string(),
            })?;
            if let Some(entry) = manifest.and_then(|m| m.get(i)) {
                entry.check_size(&path, bytes.len() as u64)?;
                entry.check_sha256(&path, &bytes_sha256(bytes))?;
            }
        }
        Ok(Self(files))
    }

    /// Takes the bytes of `file`, one of [`FILES`], so they are freed once decoded.
    fn take(&mut self, file: &str) -> Vec<u8> {
        FILES
            .iter()
            .position(|f| *f == file)
            .map(|i| std::mem::take(&mut self.0[i]))
            .unwrap_or_default()
    }
}

/// Everything a checkpoint restores.
#[derive(Debug)]
pub struct Restored {
    /// Trainable tensors in the order of `names`.
    pub params: Vec<NamedTensor>,
    /// Optimizer state.
    pub optimizer: AdamW,
    /// Loop counters (steps, tokens, seconds) at the checkpoint.
    pub state: LoopState,
}

/// Loads a checkpoint, checking it holds exactly the expected tensors (in `expected` order)
/// and that its counters agree with each other.
///
/// # Errors
/// [`Error::Checkpoint`] naming the file that is unreadable or does not fit.
pub fn load_checkpoint(dir: &Path, expected: &[NamedTensor]) -> Result<Restored> {
    decode_checkpoint(dir, CheckpointBytes::read(dir, None)?, expected)
}

/// [`load_checkpoint`] from the bytes of the checkpoint's files.
fn decode_checkpoint(
    dir: &Path,
    mut files: CheckpointBytes,
    expected: &[NamedTensor],
) -> Result<Restored> {
    let bad = |file: &str, message: String| Error::Checkpoint {
        path: dir.join(file),
        message,
    };
    let state: LoopState = serde_json::from_slice(&files.take("state.json"))
        .map_err(|e| bad("state.json", e.to_string()))?;
    #[derive(Deserialize)]
    struct OptMeta {
        step: usize,
        settings: AdamWSettings,
    }
    let meta: OptMeta = serde_json::from_slice(&files.take("optimizer.json"))
        .map_err(|e| bad("optimizer.json", e.to_string()))?;
    if meta.step != state.step {
        return Err(bad(
            "optimizer.json",
            format!(
                "the optimizer made {} updates but state.json counts {} steps",
                meta.step, state.step
            ),
        ));
    }
    let (trainable, opt) = ("trainable.safetensors", "optimizer.safetensors");
    let mut params_by_name = decode_tensors(&dir.join(trainable), &files.take(trainable))?;
    let mut moments = decode_tensors(&dir.join(opt), &files.take(opt))?;
    let take =
        |map: &mut HashMap<String, NamedTensor>, file: &str, key: String, e: &NamedTensor| {
            let t = map
                .remove(&key)
                .ok_or_else(|| bad(file, format!("missing tensor `{key}`")))?;
            if t.shape != e.shape {
                return Err(bad(
                    file,
                    format!(
                        "`{key}` has shape {:?}, the model expects {:?}",
                        t.shape, e.shape
                    ),
                ));
            }
            Ok(NamedTensor {
                name: e.name.clone(),
                ..t
            })
        };
    let mut params = Vec::new();
    let mut exp_avg = Vec::new();
    let mut exp_avg_sq = Vec::new();
    for e in expected {
        params.push(take(&mut params_by_name, trainable, e.name.clone(), e)?);
        exp_avg.push(take(&mut moments, opt, format!("exp_avg.{}", e.name), e)?);
        exp_avg_sq.push(take(
            &mut moments,
            opt,
            format!("exp_avg_sq.{}", e.name),
            e,
        )?);
    }
    for (file, left) in [(trainable, &params_by_name), (opt, &moments)] {
        if let Some(extra) = left.keys().next() {
            return Err(bad(
                file,
                format!("tensor `{extra}` is not a trainable tensor of this model"),
            ));
        }
    }
    Ok(Restored {
        params,
        optimizer: AdamW {
            settings: meta.settings,
            step: meta.step,
            exp_avg,
            exp_avg_sq,
        },
        state,
    })
}

/// Where a resumed run continues: the newest checkpoint of `run` that matches its manifest,
/// loads with exactly the `expected` tensors, counts the steps its folder is named for and
/// was written with config `config_hash`. Unusable newer ones are skipped with a warning
/// naming the file; `.tmp-step-*` folders are removed. `None`: the run has no checkpoint.
///
/// # Errors
/// [`Error::Checkpoint`] when checkpoints exist and none is usable (naming each and why), or
/// an I/O error listing the folder.
pub fn resume_point(
    run: &Path,
    expected: &[NamedTensor],
    config_hash: &str,
) -> Result<Option<(PathBuf, Restored)>> {
    remove_partial_checkpoints(run)?;
    let candidates = checkpoint_dirs(run)?;
    let mut rejected = Vec::new();
    for (step, dir) in &candidates {
        // Each file is read once: hashed against the manifest, then decoded from those bytes.
        let checked = read_manifest(dir)
            .and_then(|manifest| CheckpointBytes::read(dir, Some(&manifest)))
            .and_then(|files| decode_checkpoint(dir, files, expected))
            .and_then(|r| check_belongs(dir, *step, config_hash, r));
        match checked {
            Ok(restored) => {
                if !rejected.is_empty() {
                    tracing::warn!(
                        checkpoint = %dir.display(),
                        skipped = rejected.len(),
                        "resuming from an older checkpoint: the newer ones are unusable"
                    );
                }
                return Ok(Some((dir.clone(), restored)));
            }
            Err(e) => {
                tracing::warn!(error = %e, "skipping an unusable checkpoint");
                rejected.push(e.to_string());
            }
        }
    }
    match candidates.first() {
        None => Ok(None),
        Some((_, newest)) => Err(Error::Checkpoint {
            path: newest.parent().unwrap_or(run).to_path_buf(),
            message: format!(
                "no usable checkpoint to resume from (delete the folder to start over): {}",
                rejected.join("; ")
            ),
        }),
    }
}

/// Checks that a loaded checkpoint is the one its folder name says, written by this config.
fn check_belongs(dir: &Path, step: usize, config_hash: &str, r: Restored) -> Result<Restored> {
    let bad = |message: String| Error::Checkpoint {
        path: dir.join("state.json"),
        message,
    };
    if r.state.step != step {
        return Err(bad(format!(
            "counts {} steps but its folder is named for step {step}",
            r.state.step
        )));
    }
    if r.state.config_hash != config_hash {
        return Err(bad(format!(
            "was written with config {} but the run's config is {config_hash}",
            r.state.config_hash
        )));
    }
    Ok(r)
}
