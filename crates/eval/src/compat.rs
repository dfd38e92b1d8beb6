//! A local `tools/ollama-compat` server (llama.cpp behind Ollama's HTTP API) for machines without
//! Ollama: its pinned npm packages are installed on first use (`npm ci` into the tool's own
//! `node_modules`, said through `tracing`), the server is started on a free local port with its
//! model store in a folder of the caller's choosing, and it stops when the handle is dropped
//! (it also exits by itself when its stdin closes, so a killed parent leaves no server behind).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::ollama::BlobDigest;

/// Name of the stamp written into `node_modules` after a successful `npm ci`: the sha256 of the
/// lock file it installed (tb-testkit's installer writes and reads the same stamp).
const STAMP: &str = ".tb-npm-ci.sha256";

/// How long the server may take to print its address (Node start and llama.cpp's library load).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the local server could not be provisioned or started.
#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    /// `node` could not be run, or is older than 20.
    #[error("Node 20+ is needed for tools/ollama-compat: {0}")]
    Node(String),
    /// The tool folder is not there (no `package-lock.json` / `src/server.js`).
    #[error("{path}: not a tools/ollama-compat folder ({what} missing)")]
    NotTheTool {
        /// The folder given.
        path: PathBuf,
        /// The file that is missing.
        what: &'static str,
    },
    /// Reading or writing a file of the tool failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The lock file could not be read to compare it with the installed stamp.
    #[error(transparent)]
    Lock(#[from] crate::ollama::ErrorKind),
    /// `npm ci` failed.
    #[error("`npm ci` in {dir} failed ({status}): {stderr}")]
    Npm {
        /// The tool folder.
        dir: PathBuf,
        /// Its exit status (or why it did not run).
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// The server exited or printed something else than its address line.
    #[error("tools/ollama-compat did not start: {0}")]
    Start(String),
}

type Result<T> = std::result::Result<T, CompatError>;

/// A running `tools/ollama-compat` server.
#[derive(Debug)]
pub struct CompatServer {
    child: Child,
    /// Held open: the server exits when it closes (`--exit-on-stdin-close`).
    _stdin: ChildStdin,
    host: String,
}

impl CompatServer {
    /// Installs the tool's npm packages when `node_modules` is missing or was installed from
    /// another lock file (`npm ci --no-audit --no-fund`; needs the npm registry once), after
    /// checking that Node 20+ is there.
    pub fn provision(dir: &Path) -> Result<()> {
        node_version()?;
        let lock = dir.join("package-lock.json");
        if !lock.is_file() {
            return Err(CompatError::NotTheTool {
                path: dir.into(),
                what: "package-lock.json",
            });
        }
        if !dir.join("src/server.js").is_file() {
            return Err(CompatError::NotTheTool {
                path: dir.into(),
                what: "src/server.js",
            });
        }
        // The stamp holds the bare hex digest.
        let digest = BlobDigest::of_file(&lock)?;
        let expected = digest.as_str().trim_start_matches("sha256:").to_owned();
        let stamp = dir.join("node_modules").join(STAMP);
        if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == expected) {
            return Ok(());
        }
        tracing::info!(
            dir = %dir.display(),
            "installing tools/ollama-compat's pinned npm packages (`npm ci`, once; node-llama-cpp 3.21.1 with its prebuilt llama.cpp)"
        );
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| CompatError::Npm {
                dir: dir.into(),
                status: e.to_string(),
                stderr: String::new(),
            })?;
        if !out.status.success() {
            return Err(CompatError::Npm {
                dir: dir.into(),
                status: out.status.to_string(),
                stderr: tail(&String::from_utf8_lossy(&out.stderr), 2000),
            });
        }
        std::fs::write(&stamp, &expected).map_err(|source| CompatError::Io {
            path: stamp,
            source,
        })
    }

    /// Starts `node src/server.js` of `dir` on 127.0.0.1 with a free port, its models in
    /// `models_dir` and `threads` llama.cpp threads; its stderr goes to `log`. Returns once it
    /// listens. Call [`CompatServer::provision`] first.
    pub fn start(dir: &Path, models_dir: &Path, threads: usize, log: &Path) -> Result<Self> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CompatError::Io { path, source }
        };
        std::fs::create_dir_all(models_dir).map_err(io(models_dir))?;
        let log_file = std::fs::File::create(log).map_err(io(log))?;
        let mut child = Command::new("node")
            .current_dir(dir)
            .args(["src/server.js", "--host", "127.0.0.1", "--port", "0"])
            .args(["--threads", &threads.max(1).to_string()])
            .arg("--exit-on-stdin-close")
            .arg("--models-dir")
            .arg(std::path::absolute(models_dir).map_err(io(models_dir))?)
            .env_remove("OLLAMA_COMPAT_FAULTS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| CompatError::Node(e.to_string()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(CompatError::Start("no pipes to the server".into()));
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Drained so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let first = rx.recv_timeout(START_TIMEOUT);
        let host = match first.as_ref().map(|l| l.as_ref().map(|l| l.as_ref())) {
            Ok(Some(Ok(line))) => listening(line),
            _ => None,
        };
        let Some(host) = host else {
            let _ = child.kill();
            let _ = child.wait();
            let log_tail = std::fs::read_to_string(log).unwrap_or_default();
            return Err(CompatError::Start(format!(
                "first line {first:?}; {}: {}",
                log.display(),
                tail(&log_tail, 2000)
            )));
        };
        tracing::info!(%host, models = %models_dir.display(), "ollama-compat (llama.cpp) listening");
        Ok(Self {
            child,
            _stdin: stdin,
            host,
        })
    }

    /// `host:port` it listens on (an `OLLAMA_HOST` value).
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl Drop for CompatServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in the server's first stdout line, `{"listening":"host:port",...}`.
fn listening(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("listening")?.as_str().map(str::to_owned)
}

/// `node --version`, checked to be 20 or newer.
fn node_version() -> Result<String> {
    let out = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CompatError::Node(format!("`node --version`: {e}")))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if out.status.success() && m >= 20 => Ok(version),
        _ => Err(CompatError::Node(format!(
            "`node --version` printed {version:?}"
        ))),
    }
}

/// The last `max` bytes of `s` (on a character boundary), trimmed.
fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::{listening, tail, CompatError, CompatServer};

    #[test]
    fn the_address_comes_from_the_first_line() {
        assert_eq!(
            listening(r#"{"listening":"127.0.0.1:40123","faults":false}"#).as_deref(),
            Some("127.0.0.1:40123")
        );
        assert_eq!(listening("Error: cannot find module"), None);
        assert_eq!(listening(r#"{"faults":false}"#), None);
    }

    #[test]
    fn tail_keeps_the_end_on_a_character_boundary() {
        assert_eq!(tail("  çok güzel  ", 6), "güzel");
        assert_eq!(tail("  çok güzel  ", 5), "üzel");
        assert_eq!(tail("ab", 10), "ab");
        let s = "ğğğ";
        assert_eq!(tail(s, 3), "ğ");
    }

    #[test]
    fn a_folder_that_is_not_the_tool_is_named() {
        let dir = tempfile::tempdir().unwrap();
        match CompatServer::provision(dir.path()) {
            // Without Node the check stops earlier, with its own error.
            Err(CompatError::Node(_)) => {}
            Err(e @ CompatError::NotTheTool { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("package-lock.json"), "{msg}");
                assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
            }
            other => panic!("expected NotTheTool, got {other:?}"),
        }
    }
}
