//! `OLLAMA_HOST` parsing, as Ollama's `envconfig.Host()` does it.

use super::error::ErrorKind;

/// Ollama's default port when `OLLAMA_HOST` has no scheme.
pub const DEFAULT_PORT: u16 = 11434;

/// Turns an `OLLAMA_HOST` value into a base URL such as `http://127.0.0.1:11434`.
///
/// Follows `envconfig.Host()`: the scheme is optional (`http` when absent); the port
/// defaults to 11434 without a scheme, 80 for `http://` and 443 for `https://`; an empty
/// value means `127.0.0.1:11434`; a path after the host is kept; an invalid port falls back
/// to the default. Unlike the server, a client cannot connect to the wildcard address, so
/// `0.0.0.0` and `::` become the matching loopback address.
pub fn parse_ollama_host(value: &str) -> Result<String, ErrorKind> {
    let s = value.trim();
    let (scheme, rest, default_port) = match s.split_once("://") {
        None => ("http", s, DEFAULT_PORT),
        Some(("http", rest)) => ("http", rest, 80),
        Some(("https", rest)) => ("https", rest, 443),
        Some((other, _)) => {
            return Err(ErrorKind::InvalidHost {
                value: value.to_owned(),
                reason: format!("unsupported scheme {other:?} (use http or https)"),
            })
        }
    };
    let (hostport, path) = match rest.split_once('/') {
        Some((hp, p)) => (hp, p.trim_end_matches('/')),
        None => (rest, ""),
    };
    let (mut host, port) = split_host_port(hostport, default_port);
    if host.is_empty() {
        host = "127.0.0.1".to_owned();
    }
    if host == "0.0.0.0" {
        host = "127.0.0.1".to_owned();
    } else if host == "::" || host == "[::]" {
        host = "::1".to_owned();
    }
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let path = if path.is_empty() {
        String::new()
    } else {
        format!("/{path}")
    };
    Ok(format!("{scheme}://{host}:{port}{path}"))
}

/// `net.SplitHostPort` with Ollama's fallbacks: no port or a bad one gives the default.
fn split_host_port(hostport: &str, default_port: u16) -> (String, u16) {
    if let Some(inner) = hostport.strip_prefix('[') {
        if let Some((h, after)) = inner.split_once(']') {
            let port = after
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(default_port);
            return (h.to_owned(), port);
        }
    }
    match hostport.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((h, _)) if h.contains(':') => (hostport.to_owned(), default_port),
        Some((h, p)) => (h.to_owned(), p.parse().unwrap_or(default_port)),
        None => (hostport.to_owned(), default_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_ollama() {
        let cases = [
            ("", "http://127.0.0.1:11434"),
            ("1.2.3.4", "http://1.2.3.4:11434"),
            (":1234", "http://127.0.0.1:1234"),
            ("0.0.0.0", "http://127.0.0.1:11434"),
            ("0.0.0.0:8080", "http://127.0.0.1:8080"),
            ("example.com", "http://example.com:11434"),
            ("example.com:56789", "http://example.com:56789"),
            ("http://example.com", "http://example.com:80"),
            ("https://example.com", "https://example.com:443"),
            (
                "https://example.com:1234/ollama/",
                "https://example.com:1234/ollama",
            ),
            ("[::1]", "http://[::1]:11434"),
            ("[::1]:1234", "http://[::1]:1234"),
            ("::1", "http://[::1]:11434"),
            ("[::]:11434", "http://[::1]:11434"),
            ("localhost:notaport", "http://localhost:11434"),
            ("  127.0.0.1:5  ", "http://127.0.0.1:5"),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_ollama_host(input).unwrap(),
                want,
                "OLLAMA_HOST={input:?}"
            );
        }
        assert!(parse_ollama_host("ftp://x").is_err());
    }
}
