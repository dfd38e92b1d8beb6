//! The cross-process provisioning lock.

use std::fs::{File, OpenOptions};

use crate::repo_root;

/// An exclusive lock on `target/.tb-provision.lock`, held until dropped.
///
/// Every install in this crate runs under it. It is an advisory `flock` on its own open file,
/// so it excludes other threads of this process as well as other processes (two `cargo test`
/// runs, or a test binary and the demo's provisioning).
#[derive(Debug)]
pub struct ProvisionLock {
    file: File,
}

impl ProvisionLock {
    /// Blocks until the lock is ours.
    pub fn acquire() -> Self {
        let dir = repo_root().join("target");
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("FAILED to create {}: {e}", dir.display()));
        let path = dir.join(".tb-provision.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("FAILED to open {}: {e}", path.display()));
        file.lock()
            .unwrap_or_else(|e| panic!("FAILED to lock {}: {e}", path.display()));
        Self { file }
    }
}

impl Drop for ProvisionLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}
