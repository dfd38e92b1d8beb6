//! Atomic file replacement, the one implementation every tunebench writer uses (GGUF files,
//! checkpoints, run records, evaluation results, reports).
//!
//! The content goes to a temporary file in the target's folder (a rename across file systems
//! would not be atomic), named `.<file>.tmp-<pid>-<n><suffix>` so concurrent writers in one or
//! several processes never share one. The file is synced, renamed over the target, and the
//! folder synced: a reader sees the old file or the new one, never a part of either, and after
//! a power cut the target is one or the other too. Any failure removes the temporary file.
//!
//! It lives in tb-gguf because that is the bottom crate, which every crate that writes files
//! depends on, and because the streaming GGUF writer goes through it as well.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An I/O failure of an atomic write: what was being done and the target it was for.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct FileError {
    /// What failed ("create", "write", "sync", "rename into", "sync the folder of").
    pub op: &'static str,
    /// The target file (or, for a folder sync, the folder).
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    fn new(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Replaces `path` with `bytes` atomically (see the module docs). The folder must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic_with(path, |file| {
        file.write_all(bytes)
            .map_err(|e| FileError::new("write", path, e))
    })
}

/// Replaces `path` atomically with what `write` writes into the (empty) temporary file; an
/// error from `write` leaves `path` untouched and is returned as is.
pub fn write_atomic_with<T, E: From<FileError>>(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<T, E>,
) -> Result<T, E> {
    replace_through_temp(path, "", |tmp| {
        let mut file = File::create(tmp).map_err(|e| FileError::new("create", path, e))?;
        let value = write(&mut file)?;
        file.sync_all()
            .map_err(|e| FileError::new("sync", path, e))?;
        Ok(value)
    })
}

/// Replaces `path` atomically with the file `write` creates at the temporary path it is given,
/// for writers that open a path themselves; the temporary name ends in `suffix` (e.g. `.png`
/// for writers that pick the format from the extension).
pub fn write_atomic_via_path<T, E: From<FileError>>(
    path: &Path,
    suffix: &str,
    write: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    replace_through_temp(path, suffix, |tmp| {
        let value = write(tmp)?;
        OpenOptions::new()
            .write(true)
            .open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| FileError::new("sync", path, e))?;
        Ok(value)
    })
}

/// Syncs a folder's entries (a rename inside it) to disk.
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FileError::new("sync the folder of", dir, e))
}

/// Runs `fill` on a fresh temporary path beside `path` (it must leave a complete, synced file
/// there), renames that over `path` and syncs the folder; removes the temporary file when
/// anything before the rename fails.
fn replace_through_temp<T, E: From<FileError>>(
    path: &Path,
    suffix: &str,
    fill: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    let tmp = temp_sibling(path, suffix);
    let renamed = fill(&tmp).and_then(|value| {
        std::fs::rename(&tmp, path).map_err(|e| FileError::new("rename into", path, e))?;
        Ok(value)
    });
    match renamed {
        Ok(value) => {
            sync_dir(parent_dir(path))?;
            Ok(value)
        }
        Err(e) => {
            // Best effort: a missing folder means there is nothing to remove, and on a full
            // disk the half-written file is what fills it.
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The folder `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A hidden name next to `path`, unique within this process and across processes.
fn temp_sibling(path: &Path, suffix: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(path).join(format!(".{name}.tmp-{}-{n}{suffix}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_then_overwrites_leaving_only_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_atomic(&path, b"first, longer content").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(entries(dir.path()), ["out.json"]);
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("out.json");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert_eq!(err.path, path);
        assert!(err.to_string().contains("missing"), "{err}");
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn a_failing_writer_removes_the_temporary_file_and_keeps_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        std::fs::write(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |f| {
            f.write_all(b"half").unwrap();
            Err::<(), _>(FileError::new(
                "write",
                &path,
                std::io::Error::other("disk full"),
            ))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["out.bin"]);

        // A path writer that fails after creating its file, and one that creates none.
        let failed = write_atomic_via_path(&path, ".png", |tmp| {
            assert!(tmp.to_string_lossy().ends_with(".png"));
            std::fs::write(tmp, b"half").unwrap();
            Err::<(), _>(FileError::new(
                "draw",
                &path,
                std::io::Error::other("no font"),
            ))
        });
        assert!(failed.is_err());
        assert!(write_atomic_via_path(&path, "", |_| Ok::<_, FileError>(())).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["out.bin"]);
    }

    #[test]
    fn a_target_that_is_a_folder_fails_the_rename_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"keep").unwrap();
        let err = write_atomic(&path, b"x").unwrap_err();
        assert_eq!(err.op, "rename into");
        assert_eq!(entries(dir.path()), ["taken"]);
    }

    #[test]
    fn temporary_names_are_unique_and_hidden_beside_the_target() {
        let path = Path::new("some/dir/file.csv");
        let (a, b) = (temp_sibling(path, ""), temp_sibling(path, ".png"));
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("some/dir")));
        let name = b.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".file.csv.tmp-") && name.ends_with(".png"),
            "{name}"
        );
        assert_eq!(parent_dir(Path::new("bare")), Path::new("."));
    }
}
