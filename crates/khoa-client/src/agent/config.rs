//! The agent's configuration file: read, validated and resolved into upstreams ready to serve
//! — each with its token source, its secrets read and its HTTP clients built — or refused
//! naming the file and the key at fault, before anything listens.
//!
//! Relative paths in the file (secret files, a definition file, `ca_file`, `store_dir`) are
//! read from the configuration file's directory, so that a deployment can be moved whole.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::{Credentials, FileStore, RefreshPolicy, TokenSource};

/// What `listen` is when the file does not say.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// The prefix of the agent's own endpoints; no upstream may take its name.
pub const RESERVED: &str = "_khoa";

/// How long a connection to a token endpoint or an upstream may take: past it the endpoint is
/// "down" and the caller hears so within seconds, rather than after the system's TCP timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A whole token call. A token endpoint that answers slower than this is as good as down.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole forwarded request, the streamed answer included.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// A mistake in the configuration: the file, the dotted key at fault (empty for the file as a
/// whole) and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}{message}", file.display(), if key.is_empty() { String::new() } else { format!("{key}: ") })]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub message: String,
}

/// The file as written. Every key is documented in `deploy/agent.example.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    #[serde(default)]
    allow_remote: bool,
    #[serde(default)]
    upstreams: BTreeMap<String, UpstreamFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamFile {
    base_url: String,
    dialect: String,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret_file: Option<PathBuf>,
    client_secret_env: Option<String>,
    scope: Option<String>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    partner_code: Option<String>,
    partner_key_file: Option<PathBuf>,
    partner_key_env: Option<String>,
    signing_key_file: Option<PathBuf>,
    signing_key_env: Option<String>,
    ca_file: Option<PathBuf>,
    store_dir: Option<PathBuf>,
    #[serde(default = "yes")]
    retry_unauthorized: bool,
}

fn yes() -> bool {
    true
}

/// The agent's configuration, resolved.
#[derive(Debug)]
pub struct AgentConfig {
    pub listen: SocketAddr,
    /// By name.
    pub upstreams: BTreeMap<String, Upstream>,
}

/// One upstream, ready to serve: `http://LISTEN/NAME/<path>` goes to `base` + `<path>`.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    /// The base URL without a trailing slash, so that `<path>` (which starts with one) is
    /// appended as it is.
    pub base: String,
    pub source: TokenSource,
    /// The client forwarded requests go through (the token source has its own, with a
    /// shorter timeout).
    pub http: reqwest::Client,
}

impl AgentConfig {
    /// Reads, validates and resolves the file at `path`.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        // The upstreams' HTTP clients are built here, and need it.
        crate::install_crypto_provider();
        let fail = |key: &str, message: String| ConfigError {
            file: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail("", e.to_string()))?;
        let value: toml::Value = toml::from_str(&text).map_err(|e| fail("", e.to_string()))?;
        let file: File = serde_path_to_error::deserialize(value).map_err(|e| {
            let (key, message) = shape_error(&e);
            fail(&key, message)
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));

        let listen = file.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen.parse().map_err(|_| {
            fail(
                "listen",
                format!(
                    "`{listen}` is not an address to listen on: write an IP address and a \
                     port, such as 127.0.0.1:7070 (host names are not looked up)"
                ),
            )
        })?;
        if !listen.ip().is_loopback() && !file.allow_remote {
            return Err(fail(
                "listen",
                format!(
                    "{listen} is not a loopback address: anyone who reaches it calls the \
                     upstreams with these credentials; set allow_remote = true if that is meant"
                ),
            ));
        }
        if file.upstreams.is_empty() {
            return Err(fail(
                "upstreams",
                "no upstream: add an [upstreams.NAME] table".into(),
            ));
        }
        let mut upstreams = BTreeMap::new();
        for (name, u) in file.upstreams {
            let at = format!("upstreams.{name}");
            let upstream = resolve(&name, u, dir).map_err(|(key, message)| {
                let key = if key.is_empty() {
                    at.clone()
                } else {
                    format!("{at}.{key}")
                };
                fail(&key, message)
            })?;
            upstreams.insert(name, upstream);
        }
        Ok(AgentConfig { listen, upstreams })
    }
}

/// A mistake of shape (an unknown key, a wrong type) as a key and a one-line message; an
/// unknown key is reported at its table by serde, so the key itself is named here.
fn shape_error(e: &serde_path_to_error::Error<toml::de::Error>) -> (String, String) {
    let mut key = e.path().to_string();
    if key == "." {
        key.clear();
    }
    let inner = e.inner().to_string();
    let message = inner.lines().next().unwrap_or_default().to_owned();
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
        && !(key == field || key.ends_with(&format!(".{field}")))
    {
        key = if key.is_empty() {
            field.to_owned()
        } else {
            format!("{key}.{field}")
        };
    }
    (key, message)
}

/// A key under the upstream's table, and what is wrong with it.
type Fault = (String, String);

fn fault(key: &str, message: impl Into<String>) -> Fault {
    (key.to_owned(), message.into())
}

fn resolve(name: &str, u: UpstreamFile, dir: &Path) -> Result<Upstream, Fault> {
    if name == RESERVED {
        return Err(fault(
            "",
            format!("`{RESERVED}` is reserved for the agent's own endpoints (/{RESERVED}/…)"),
        ));
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(fault(
            "",
            format!(
                "`{name}` is not an upstream name: use lower-case letters, digits, `_` and \
                 `-` (it is the first segment of the path)"
            ),
        ));
    }
    let base = http_url("base_url", &u.base_url)?;
    let token_url = match &u.token_url {
        Some(url) => Some(http_url("token_url", url)?),
        None => None,
    };

    let dialect = if khoa_dialect::built_in(&u.dialect).is_some() {
        crate::load_built_in(&u.dialect).map_err(|e| fault("dialect", e.to_string()))?
    } else {
        let file = dir.join(&u.dialect);
        if !file.is_file() {
            let names: Vec<_> = khoa_dialect::BUILT_IN.iter().map(|(n, _)| *n).collect();
            return Err(fault(
                "dialect",
                format!(
                    "`{}` is neither a built-in dialect ({}) nor a definition file",
                    u.dialect,
                    names.join(", ")
                ),
            ));
        }
        crate::load_file(&file).map_err(|e| fault("dialect", e.to_string()))?
    };

    let creds = Credentials {
        client_id: u.client_id,
        client_secret: secret(
            dir,
            "client_secret",
            u.client_secret_file,
            u.client_secret_env,
        )?,
        username: u.username,
        password: secret(dir, "password", u.password_file, u.password_env)?,
        scope: u.scope,
        partner_code: u.partner_code,
        partner_key_hex: secret(dir, "partner_key", u.partner_key_file, u.partner_key_env)?,
        signing_key: secret(dir, "signing_key", u.signing_key_file, u.signing_key_env)?,
    };

    let certs = match &u.ca_file {
        Some(file) => Some(ca_certs(&dir.join(file)).map_err(|m| fault("ca_file", m))?),
        None => None,
    };
    let client = |timeout: Duration| {
        let mut b = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            // A redirect is the caller's to follow (or not), as if it called the upstream
            // itself; a token endpoint that redirects is misconfigured.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(certs) = &certs {
            b = b.tls_certs_only(certs.iter().cloned());
        }
        b.build()
            .map_err(|e| fault("", format!("its HTTP client: {e}")))
    };
    let http = client(UPSTREAM_TIMEOUT)?;

    let mut builder = TokenSource::builder(Arc::new(dialect))
        .credentials(creds)
        .http_client(client(TOKEN_TIMEOUT)?)
        .policy(RefreshPolicy {
            retry_unauthorized: u.retry_unauthorized,
            ..RefreshPolicy::default()
        });
    builder = match &token_url {
        Some(url) => builder.token_url(url.clone()),
        None => builder.base_url(base.clone()),
    };
    if let Some(store) = &u.store_dir {
        let store =
            FileStore::new(&dir.join(store)).map_err(|e| fault("store_dir", e.to_string()))?;
        builder = builder.store(store);
    }
    let source = builder.build().map_err(|e| fault("", e.to_string()))?;
    // A credential the dialect needs and the table lacks is found now, not at the first
    // request.
    source.check().map_err(|e| fault("", e.to_string()))?;

    Ok(Upstream {
        name: name.to_owned(),
        base: base.trim_end_matches('/').to_owned(),
        source,
        http,
    })
}

/// An `http` or `https` URL with a host and no query or fragment, as written.
fn http_url(key: &str, given: &str) -> Result<String, Fault> {
    // The text is not repeated: it may hold credentials (refused below).
    let url = reqwest::Url::parse(given).map_err(|e| fault(key, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(fault(
            key,
            format!("`{}:` is not http:// or https://", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(fault(key, "the URL names no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fault(
            key,
            "credentials in a URL reach error messages and logs: give them with the \
             *_file or *_env keys",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(fault(
            key,
            "the URL has a query or a fragment, which a base cannot keep",
        ));
    }
    Ok(given.to_owned())
}

/// The secret `what` from `what_file` (relative to the configuration's directory) or
/// `what_env`, as [`crate::read_secret`] reads it; a fault names the key that was given.
fn secret(
    dir: &Path,
    what: &str,
    file: Option<PathBuf>,
    env: Option<String>,
) -> Result<Option<SecretString>, Fault> {
    let (file_key, env_key) = (format!("{what}_file"), format!("{what}_env"));
    if file.is_some() && env.is_some() {
        return Err(fault(
            &file_key,
            format!("both {file_key} and {env_key} are set: give one"),
        ));
    }
    let key = if file.is_some() { file_key } else { env_key };
    let path = file.map(|f| dir.join(f));
    crate::read_secret(what, path.as_deref(), env.as_deref()).map_err(|m| fault(&key, m))
}

/// The PEM certificates of `file`: the only roots an upstream's certificate is checked
/// against.
fn ca_certs(file: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", file.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AgentConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        std::fs::write(&path, text).unwrap();
        AgentConfig::load(&path)
    }

    const OK: &str = r#"
        [upstreams.hub]
        base_url = "https://hub.example/api/"
        dialect = "bankhub"
        client_id = "app"
        client_secret_file = "secret"
    "#;

    #[test]
    fn a_minimal_file_listens_on_the_default_and_strips_the_base_slash() {
        let c = load(OK).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.upstreams["hub"].base, "https://hub.example/api");
    }

    #[test]
    fn mistakes_name_the_file_and_the_key() {
        let e = load(&format!("{OK}\nextra = 1\n")).unwrap_err();
        assert_eq!(e.key, "upstreams.hub.extra", "{e}");
        assert!(
            e.to_string().contains("agent.toml: upstreams.hub.extra: "),
            "{e}"
        );
        let e = load("listen = 7070\n[upstreams.a]\nbase_url='http://x'\ndialect='oauth2'")
            .unwrap_err();
        assert_eq!(e.key, "listen", "{e}");
        let e = load(&OK.replace("client_secret_file = \"secret\"", "")).unwrap_err();
        assert_eq!(e.key, "upstreams.hub", "{e}");
        assert!(e.message.contains("client_secret"), "{e}");
    }

    #[test]
    fn credentials_in_a_url_are_refused_without_being_repeated() {
        let e =
            load(&OK.replace("https://hub.example", "https://me:pw-0123@hub.example")).unwrap_err();
        assert_eq!(e.key, "upstreams.hub.base_url", "{e}");
        assert!(!e.to_string().contains("pw-0123"), "{e}");
    }

    #[test]
    fn a_secret_file_loses_one_final_line_ending_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "a b\r\n").unwrap();
        let s = secret(dir.path(), "x", Some("s".into()), None)
            .unwrap()
            .unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&s), "a b");
        std::fs::write(dir.path().join("s"), "\n").unwrap();
        let e = secret(dir.path(), "x", Some("s".into()), None).unwrap_err();
        assert_eq!(e.0, "x_file");
    }
}
