//! Errors of the Ollama client, in uv's shape: a kind plus how many retries were made and
//! how long the whole call took.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The result type of the Ollama client.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong in a call to Ollama.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No connection could be made (refused, unresolvable host, connect timeout).
    #[error(
        "could not connect to Ollama at {url}: nothing answered there. Start Ollama with \
         `ollama serve`, or set OLLAMA_HOST to the address it listens on"
    )]
    Unreachable {
        /// The URL requested.
        url: String,
        /// The connection error.
        #[source]
        source: reqwest::Error,
    },
    /// No answer (or no next chunk) within the timeout.
    #[error("Ollama at {url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL requested.
        url: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// Ollama answered with an error status and (usually) `{"error": "..."}`.
    #[error("Ollama answered {status} for {method} {url}: {message}")]
    Api {
        /// The HTTP method.
        method: &'static str,
        /// The URL requested.
        url: String,
        /// HTTP status code.
        status: u16,
        /// Ollama's error text (or the raw body when it was not JSON).
        message: String,
    },
    /// Ollama reported an error inside a response stream (`{"error": "..."}` line).
    #[error("Ollama reported an error while streaming {url}: {message}")]
    Stream {
        /// The URL requested.
        url: String,
        /// Ollama's error text.
        message: String,
    },
    /// The response ended (or the connection broke) before the final `done` object.
    #[error("the response from {url} was cut off after {chunks} chunk(s), before Ollama said it was done")]
    StreamCut {
        /// The URL requested.
        url: String,
        /// Complete chunks read before the cut.
        chunks: usize,
        /// The underlying read error, if the connection broke.
        #[source]
        source: Option<std::io::Error>,
    },
    /// A complete response that is not what Ollama sends.
    #[error("unexpected response from {url}: {message}")]
    InvalidResponse {
        /// The URL requested.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// Another HTTP-level failure.
    #[error("HTTP request to {url} failed")]
    Http {
        /// The URL requested.
        url: String,
        /// The reqwest error.
        #[source]
        source: reqwest::Error,
    },
    /// Reading a local file (a GGUF to upload) failed.
    #[error("could not read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `OLLAMA_HOST` (or a base URL) could not be used.
    #[error("invalid Ollama host {value:?}: {reason}")]
    InvalidHost {
        /// The value given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Building the HTTP client failed.
    #[error("could not build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// An error from the Ollama client: its [`ErrorKind`], the retries made and the time spent.
#[derive(Debug)]
pub struct Error {
    kind: Box<ErrorKind>,
    retries: u32,
    elapsed: Duration,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, retries: u32, elapsed: Duration) -> Self {
        Self {
            kind: Box::new(kind),
            retries,
            elapsed,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// How many times the call was retried before giving up.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Time from the first attempt to giving up.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The HTTP status Ollama answered with, if it answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match *self.kind {
            ErrorKind::Api { status, .. } => Some(status),
            _ => None,
        }
    }

    /// Ollama's own error text, when the error came from Ollama.
    pub fn ollama_message(&self) -> Option<&str> {
        match &*self.kind {
            ErrorKind::Api { message, .. } | ErrorKind::Stream { message, .. } => Some(message),
            _ => None,
        }
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind, 0, Duration::ZERO)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)?;
        if self.retries > 0 {
            write!(
                f,
                " (gave up after {} {} in {:.1}s)",
                self.retries,
                if self.retries == 1 {
                    "retry"
                } else {
                    "retries"
                },
                self.elapsed.as_secs_f64()
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.kind)
    }
}
