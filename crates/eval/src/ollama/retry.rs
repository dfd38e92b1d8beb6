//! Which failures are worth another attempt, and how long to wait before it.

use std::time::Duration;

use super::error::ErrorKind;

/// How a call may be retried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallPolicy {
    /// Repeating the request cannot change the outcome (reads, inference, uploads of
    /// content-addressed blobs, creating the same model again).
    pub idempotent: bool,
    /// A 500 (or an error line in the stream) may be transient for this call. Inference 500s
    /// often are (a runner crashed or is restarting); create/delete 500s are not.
    pub retry_server_errors: bool,
}

/// Ollama's 500 texts that repeating the request will not fix.
const PERMANENT_500: [&str; 7] = [
    "not found",
    "no such file",
    "does not support",
    "invalid",
    "unknown type",
    "not in GGUF format",
    "unable to load model",
];

/// Whether `kind` is transient for a call with `policy`. 4xx answers never are.
pub(crate) fn is_transient(kind: &ErrorKind, policy: CallPolicy) -> bool {
    match kind {
        // Nothing listening, or the connection was refused/reset before the request went out:
        // safe to repeat for every call.
        ErrorKind::Unreachable { .. } => true,
        ErrorKind::Timeout { .. } | ErrorKind::StreamCut { .. } => policy.idempotent,
        ErrorKind::Api {
            status, message, ..
        } => match status {
            502..=504 => policy.idempotent,
            500 => policy.idempotent && policy.retry_server_errors && !is_permanent(message),
            _ => false,
        },
        ErrorKind::Stream { message, .. } => {
            policy.idempotent && policy.retry_server_errors && !is_permanent(message)
        }
        // E.g. a connection reset while sending, on a call that is safe to repeat.
        ErrorKind::Http { source, .. } => {
            policy.idempotent && (source.is_connect() || source.is_timeout() || source.is_request())
        }
        ErrorKind::InvalidResponse { .. }
        | ErrorKind::Io { .. }
        | ErrorKind::InvalidHost { .. }
        | ErrorKind::Client(_) => false,
    }
}

fn is_permanent(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    PERMANENT_500
        .iter()
        .any(|p| m.contains(&p.to_ascii_lowercase()))
}

/// Exponential backoff: `base · 2^attempt`, capped at `max`, with up to 25 % jitter so that
/// several evaluators do not retry in lockstep.
pub(crate) fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX));
    let capped = exp.min(max);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = capped.mul_f64(f64::from(nanos % 1000) / 4000.0);
    capped + jitter
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, message: &str) -> ErrorKind {
        ErrorKind::Api {
            method: "POST",
            url: "u".into(),
            status,
            message: message.into(),
        }
    }

    const INFER: CallPolicy = CallPolicy {
        idempotent: true,
        retry_server_errors: true,
    };
    const CREATE: CallPolicy = CallPolicy {
        idempotent: true,
        retry_server_errors: false,
    };

    #[test]
    fn classifies_statuses() {
        assert!(!is_transient(&api(400, "bad"), INFER));
        assert!(!is_transient(&api(404, "model 'x' not found"), INFER));
        assert!(!is_transient(&api(429, "busy"), INFER));
        assert!(is_transient(
            &api(503, "server busy, please try again"),
            INFER
        ));
        assert!(is_transient(
            &api(500, "llama runner process has terminated"),
            INFER
        ));
        assert!(!is_transient(&api(500, "unable to load model: /x"), INFER));
        assert!(!is_transient(&api(500, "boom"), CREATE));
        assert!(!is_transient(&api(501, "nope"), INFER));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = Duration::from_millis(100);
        let m = Duration::from_secs(2);
        assert!(backoff(b, m, 0) >= b && backoff(b, m, 0) <= b.mul_f64(1.25));
        assert!(backoff(b, m, 3) >= Duration::from_millis(800));
        assert!(backoff(b, m, 30) <= m.mul_f64(1.25));
    }
}
