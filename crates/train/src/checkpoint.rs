//! Resumable checkpoints: `runs/<id>/checkpoints/step-NNNNNN/` with the trainable tensors, the
//! AdamW moments and the loop counters. Written into a temporary folder and renamed, so a
//! killed run leaves either a whole checkpoint or none.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use crate::error::{io, Error, Result};
use crate::optimizer::{AdamW, AdamWSettings, NamedTensor};
use crate::run_dir::write_atomic;

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

/// The newest complete checkpoint of a run, if any.
pub fn latest_checkpoint(run: &Path) -> Result<Option<PathBuf>> {
    let dir = run.join("checkpoints");
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut best: Option<(usize, PathBuf)> = None;
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(n) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<usize>().ok())
        else {
            continue;
        };
        if !entry.path().join("state.json").is_file() {
            continue;
        }
        if best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, entry.path()));
        }
    }
    Ok(best.map(|(_, p)| p))
}

fn to_bytes(t: &NamedTensor) -> Vec<u8> {
    t.data.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes named f32 tensors as one safetensors file (atomically).
pub fn save_tensors(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
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
    let data = safetensors::serialize(views, None)
        .map_err(|e| Error::Method(format!("{}: {e}", path.display())))?;
    write_atomic(path, &data)
}

/// Reads every tensor of an F32 safetensors file, by name.
pub fn load_tensors(path: &Path) -> Result<HashMap<String, NamedTensor>> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
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
pub fn save_checkpoint(
    run: &Path,
    params: &[NamedTensor],
    optimizer: &AdamW,
    state: &LoopState,
) -> Result<PathBuf> {
    let final_dir = checkpoint_dir(run, state.step);
    let parent = final_dir.parent().unwrap_or(run).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let tmp = parent.join(format!(".tmp-step-{:06}", state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    save_tensors(&tmp.join("trainable.safetensors"), params)?;
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
    save_tensors(&tmp.join("optimizer.safetensors"), &moments)?;
    let opt_meta = serde_json::json!({ "step": optimizer.step, "settings": optimizer.settings });
    write_atomic(&tmp.join("optimizer.json"), opt_meta.to_string().as_bytes())?;
    let text = serde_json::to_string_pretty(state).map_err(|source| Error::Json {
        path: tmp.join("state.json"),
        source,
    })?;
    write_atomic(&tmp.join("state.json"), text.as_bytes())?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    Ok(final_dir)
}

/// Everything a checkpoint restores.
#[derive(Debug)]
pub struct Restored {
    /// Trainable tensors in the order of `names`.
    pub params: Vec<NamedTensor>,
    /// Optimizer state.
    pub optimizer: AdamW,
    /// Counters.
    pub state: LoopState,
}

/// Loads a checkpoint, checking it holds exactly the expected tensors (in `expected` order).
pub fn load_checkpoint(dir: &Path, expected: &[NamedTensor]) -> Result<Restored> {
    let bad = |message: String| Error::Checkpoint {
        path: dir.to_path_buf(),
        message,
    };
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
    let state: LoopState = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let opt_path = dir.join("optimizer.json");
    let text = std::fs::read_to_string(&opt_path).map_err(io(&opt_path))?;
    #[derive(Deserialize)]
    struct OptMeta {
        step: usize,
        settings: AdamWSettings,
    }
    let meta: OptMeta = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let mut params_by_name = load_tensors(&dir.join("trainable.safetensors"))?;
    let mut moments = load_tensors(&dir.join("optimizer.safetensors"))?;
    let take = |map: &mut HashMap<String, NamedTensor>, key: String, e: &NamedTensor| {
        let t = map
            .remove(&key)
            .ok_or_else(|| bad(format!("missing tensor `{key}`")))?;
        if t.shape != e.shape {
            return Err(bad(format!(
                "`{key}` has shape {:?}, the model expects {:?}",
                t.shape, e.shape
            )));
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
        params.push(take(&mut params_by_name, e.name.clone(), e)?);
        exp_avg.push(take(&mut moments, format!("exp_avg.{}", e.name), e)?);
        exp_avg_sq.push(take(&mut moments, format!("exp_avg_sq.{}", e.name), e)?);
    }
    if let Some(extra) = params_by_name.keys().next() {
        return Err(bad(format!(
            "tensor `{extra}` is not a trainable tensor of this model"
        )));
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
