//! `[http]` and `[tls]`: what the listener accepts (body and head sizes, timeouts, connection
//! caps), native TLS on it, and how `listen` is read.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

use super::{ConfigError, invalid};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Whole-request timeout in seconds (408).
    pub request_timeout_secs: u64,
    /// Largest request head (request line and headers); larger ones get 431. At least 8192.
    pub max_header_bytes: usize,
    /// Seconds a connection may take to send a request's headers before it is closed (the
    /// slow-loris defence). Also how long an idle kept-alive connection waits.
    pub header_read_timeout_secs: u64,
    /// Connections served at once. When they are all taken, the keep-alive connection idle
    /// longest is closed to let a newcomer in; if none is idle, newcomers wait in the kernel's
    /// accept queue.
    pub max_connections: usize,
    /// Connections one client address may hold at once; one more is closed as soon as it is
    /// accepted, before it takes one of `max_connections`, so that a single client cannot
    /// crowd out the others. Default 256, or `max_connections` when that is lower. Behind a
    /// proxy every connection comes from the proxy's address: allow it all of its pool.
    /// `KHOA_HTTP__MAX_CONNECTIONS_PER_IP`.
    pub max_connections_per_ip: Option<usize>,
    /// On SIGTERM or Ctrl-C: seconds in-flight requests get to finish before the process
    /// exits anyway.
    pub shutdown_grace_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 16 * 1024,
            request_timeout_secs: 30,
            max_header_bytes: 16 * 1024,
            header_read_timeout_secs: 10,
            max_connections: 1024,
            max_connections_per_ip: None,
            shutdown_grace_secs: 30,
        }
    }
}

impl HttpConfig {
    /// `max_connections_per_ip`, or its default.
    pub fn max_connections_per_ip(&self) -> usize {
        self.max_connections_per_ip
            .unwrap_or(256.min(self.max_connections))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 256 {
            return invalid("http.max_body_bytes", "must be at least 256");
        }
        // hyper's own lower bound for its read buffer.
        if self.max_header_bytes < 8192 {
            return invalid("http.max_header_bytes", "must be at least 8192");
        }
        if self.header_read_timeout_secs == 0 {
            return invalid("http.header_read_timeout_secs", "must be at least 1");
        }
        if self.request_timeout_secs == 0 {
            return invalid("http.request_timeout_secs", "must be at least 1");
        }
        if self.max_connections == 0 {
            return invalid("http.max_connections", "must be at least 1");
        }
        if let Some(per_ip) = self.max_connections_per_ip
            && !(1..=self.max_connections).contains(&per_ip)
        {
            return invalid(
                "http.max_connections_per_ip",
                format!(
                    "must be between 1 and http.max_connections ({})",
                    self.max_connections
                ),
            );
        }
        Ok(())
    }
}

/// Native TLS (HTTPS) on `listen`: both files or neither. When set, the listener speaks only
/// HTTPS (TLS 1.2 and 1.3, HTTP/1.1 by ALPN) and the default issuer is `https://{listen}`.
/// SIGHUP reloads both files without dropping a connection; a reload that fails keeps the
/// current certificate and logs why.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain: the server's certificate first, then its intermediates.
    /// `KHOA_TLS__CERT_FILE`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the first certificate (PKCS#8, or PKCS#1 RSA, or SEC1 EC); readable
    /// by khoa alone. `KHOA_TLS__KEY_FILE`.
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let missing = match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Some(("tls.key_file", "tls.cert_file")),
            (None, Some(_)) => Some(("tls.cert_file", "tls.key_file")),
            _ => None,
        };
        if let Some((key, other)) = missing {
            return invalid(
                key,
                format!("must be set with {other}: TLS needs both files, or neither"),
            );
        }
        for (key, file) in [
            ("tls.cert_file", &self.cert_file),
            ("tls.key_file", &self.key_file),
        ] {
            if file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
                return invalid(key, "must name a file");
            }
        }
        Ok(())
    }
}

/// An IP address and a port, with a message that says so: the standard library's "invalid
/// socket address syntax" leaves `localhost:8080` a riddle.
pub(super) fn listen_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Text(String),
        Port(u64),
    }
    let given = match Given::deserialize(d)? {
        Given::Text(s) => s,
        Given::Port(p) => p.to_string(),
    };
    parse_listen(&given).map_err(serde::de::Error::custom)
}

/// An address to listen on, `listen` and `khoa demo --listen` alike.
pub fn parse_listen(given: &str) -> Result<SocketAddr, String> {
    given.parse().map_err(|_| {
        format!(
            "`{given}` is not an address to listen on: write an IP address and a port, such as \
             127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080 (host names such as localhost are not \
             looked up)"
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn tls_needs_both_files_and_the_per_address_cap_fits_the_global_one() {
        let mut c = Config::default();
        c.tls.cert_file = Some("cert.pem".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("`tls.key_file`"), "{e}");
        c.tls.key_file = Some("".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("`tls.key_file`") && e.contains("must name a file"),
            "{e}"
        );
        c.tls.key_file = Some("key.pem".into());
        c.validate().unwrap();
        assert!(c.issuer().starts_with("https://"), "{}", c.issuer());

        let mut c = Config::default();
        assert_eq!(c.http.max_connections_per_ip(), 256);
        c.http.max_connections = 10;
        assert_eq!(
            c.http.max_connections_per_ip(),
            10,
            "never above the global cap"
        );
        c.http.max_connections_per_ip = Some(11);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("`http.max_connections_per_ip`"), "{e}");
        c.http.max_connections_per_ip = Some(0);
        assert!(c.validate().is_err());
        c.http.max_connections_per_ip = Some(10);
        c.validate().unwrap();
    }
}
