//! Checkpoints as resuming meets them on disk: intact, truncated, bit-flipped, without their
//! manifest, half-written, from another experiment, renamed; and the metrics log cut short.

use std::path::Path;

use tb_train::checkpoint::{
    checkpoint_dir, resume_point, save_checkpoint, verify_checkpoint, LoopState,
};
use tb_train::{AdamW, AdamWSettings, Error, NamedTensor};

const HASH: &str = "hash-of-this-run";

fn params(seed: f32) -> Vec<NamedTensor> {
    ["a.lora_A", "a.lora_B", "b.lora_A"]
        .iter()
        .enumerate()
        .map(|(i, name)| NamedTensor {
            name: (*name).into(),
            shape: vec![4, 3 + i],
            data: (0..4 * (3 + i)).map(|j| seed + j as f32 * 0.25).collect(),
        })
        .collect()
}

fn settings() -> AdamWSettings {
    AdamWSettings {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
    }
}

/// Saves the state after `step` steps (moments and params depend on the step).
fn save(run: &Path, step: usize, hash: &str) {
    let p = params(step as f32);
    let mut optimizer = AdamW::new(settings(), &p);
    optimizer.step = step;
    optimizer.exp_avg[0].data[0] = step as f32;
    let state = LoopState {
        step,
        config_hash: hash.into(),
        train_s: step as f64,
        trained_tokens: 10 * step,
        loss_tokens: 5 * step,
        slots: 12 * step,
        measured_tokens: 9 * step,
        measured_loss_tokens: 4 * step,
        measured_s: 0.5 * step as f64,
        last_loss: 1.0 / step as f64,
    };
    save_checkpoint(run, &p, &optimizer, &state).unwrap();
}

fn resumed_step(run: &Path) -> usize {
    let (dir, r) = resume_point(run, &params(0.0), HASH).unwrap().unwrap();
    assert_eq!(dir, checkpoint_dir(run, r.state.step));
    assert_eq!(r.params, params(r.state.step as f32));
    assert_eq!(r.optimizer.step, r.state.step);
    assert_eq!(r.optimizer.exp_avg[0].data[0], r.state.step as f32);
    r.state.step
}

fn message(e: Error) -> String {
    e.to_string()
}

#[test]
fn newest_intact_checkpoint_is_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(resume_point(tmp.path(), &params(0.0), HASH)
        .unwrap()
        .is_none());
    for step in [5, 10, 15] {
        save(tmp.path(), step, HASH);
        verify_checkpoint(&checkpoint_dir(tmp.path(), step)).unwrap();
    }
    assert_eq!(resumed_step(tmp.path()), 15);
}

#[test]
fn damaged_checkpoints_are_skipped_for_the_newest_intact_one() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    for step in [5, 10, 15, 20, 25, 30] {
        save(run, step, HASH);
    }
    let file = |step, name: &str| checkpoint_dir(run, step).join(name);
    // 30: one bit flipped in a tensor; the safetensors file still parses.
    let mut bytes = std::fs::read(file(30, "trainable.safetensors")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(file(30, "trainable.safetensors"), &bytes).unwrap();
    // 25: truncated optimizer state.
    let bytes = std::fs::read(file(25, "optimizer.safetensors")).unwrap();
    std::fs::write(file(25, "optimizer.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    // 20: no manifest (killed before the folder was complete, copied by hand).
    std::fs::remove_file(file(20, "manifest.json")).unwrap();
    // 15: written by another experiment.
    std::fs::remove_dir_all(checkpoint_dir(run, 15)).unwrap();
    let other = tempfile::tempdir().unwrap();
    save(other.path(), 15, "another-config");
    std::fs::rename(checkpoint_dir(other.path(), 15), checkpoint_dir(run, 15)).unwrap();
    // A half-written save.
    let partial = run.join("checkpoints/.tmp-step-000035");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("state.json"), "{").unwrap();

    let checks: Vec<String> = [30, 25, 20]
        .iter()
        .map(|&s| message(verify_checkpoint(&checkpoint_dir(run, s)).unwrap_err()))
        .collect();
    assert!(
        checks[0].contains("step-000030/trainable.safetensors") && checks[0].contains("SHA-256"),
        "{}",
        checks[0]
    );
    assert!(
        checks[1].contains("step-000025/optimizer.safetensors") && checks[1].contains("truncated"),
        "{}",
        checks[1]
    );
    assert!(
        checks[2].contains("step-000020/manifest.json"),
        "{}",
        checks[2]
    );
    assert_eq!(resumed_step(run), 10);
    assert!(!partial.exists(), "the half-written folder stayed");
}

#[test]
fn no_usable_checkpoint_is_an_error_naming_each() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path();
    save(run, 5, "another-config");
    save(run, 10, HASH);
    // A checkpoint renamed to another step.
    std::fs::rename(checkpoint_dir(run, 10), checkpoint_dir(run, 12)).unwrap();
    // A folder that is not a checkpoint at all.
    std::fs::create_dir_all(checkpoint_dir(run, 20)).unwrap();
    let e = message(resume_point(run, &params(0.0), HASH).unwrap_err());
    assert!(e.contains("no usable checkpoint"), "{e}");
    assert!(e.contains("step-000020/manifest.json"), "{e}");
    assert!(
        e.contains("step-000012/state.json") && e.contains("named for step 12"),
        "{e}"
    );
    assert!(
        e.contains("step-000005/state.json") && e.contains("another-config"),
        "{e}"
    );
}

#[test]
fn a_checkpoint_of_other_tensors_is_not_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    save(tmp.path(), 5, HASH);
    let mut other = params(0.0);
    other[1].shape = vec![4, 5];
    let e = message(resume_point(tmp.path(), &other, HASH).unwrap_err());
    assert!(
        e.contains("trainable.safetensors") && e.contains("shape"),
        "{e}"
    );
    other.pop();
    let e = message(resume_point(tmp.path(), &other[..1], HASH).unwrap_err());
    assert!(e.contains("is not a trainable tensor"), "{e}");
}

#[test]
fn manifest_must_list_exactly_the_checkpoint_files() {
    let tmp = tempfile::tempdir().unwrap();
    save(tmp.path(), 5, HASH);
    let dir = checkpoint_dir(tmp.path(), 5);
    let manifest = dir.join("manifest.json");
    let mut entries: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    entries.as_array_mut().unwrap().pop();
    std::fs::write(&manifest, entries.to_string()).unwrap();
    let e = message(verify_checkpoint(&dir).unwrap_err());
    assert!(
        e.contains("manifest.json") && e.contains("state.json"),
        "{e}"
    );
    std::fs::write(&manifest, "not json").unwrap();
    let e = message(verify_checkpoint(&dir).unwrap_err());
    assert!(e.contains("manifest.json"), "{e}");
}

#[test]
fn a_failed_save_leaves_no_partial_folder() {
    let tmp = tempfile::tempdir().unwrap();
    save(tmp.path(), 5, HASH);
    // The final folder's place is taken by a file: the save fails at its rename, after every
    // file was written, and must clean up the temporary folder.
    std::fs::write(checkpoint_dir(tmp.path(), 10), "in the way").unwrap();
    let p = params(10.0);
    let optimizer = AdamW::new(settings(), &p);
    let state = LoopState {
        step: 10,
        config_hash: HASH.into(),
        train_s: 0.0,
        trained_tokens: 0,
        loss_tokens: 0,
        slots: 0,
        measured_tokens: 0,
        measured_loss_tokens: 0,
        measured_s: 0.0,
        last_loss: 0.0,
    };
    assert!(save_checkpoint(tmp.path(), &p, &optimizer, &state).is_err());
    std::fs::remove_file(checkpoint_dir(tmp.path(), 10)).unwrap();
    let names: Vec<String> = std::fs::read_dir(tmp.path().join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["step-000005"]);
}
