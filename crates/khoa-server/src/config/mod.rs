//! The one typed configuration: defaults → TOML file → `KHOA_*` environment variables
//! (nested keys with `__`, e.g. `KHOA_PASSWORD_HASH__MEMORY_KIB`). Validated once at start-up;
//! an invalid value stops the process with a message that names the key.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use khoa_core::password::PasswordParams;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub(crate) mod known_keys;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on: an IP address and a port. `KHOA_LISTEN`.
    #[serde(deserialize_with = "listen_addr")]
    pub listen: SocketAddr,
    /// `sqlite://FILE` (created on first start) or `postgres://USER:PASSWORD@HOST:PORT/DB` (the
    /// database must exist; khoa creates its tables). Messages print it with the password
    /// masked. `KHOA_DATABASE_URL`.
    pub database_url: String,
    /// `iss` of every token. Defaults to `http://{listen}`, or `https://{listen}` with TLS.
    /// `KHOA_ISSUER`.
    pub issuer: Option<String>,
    /// `aud` of JWT access tokens. `KHOA_AUDIENCE`.
    pub audience: String,
    /// The master key as 64 hex characters. `KHOA_MASTER_KEY`. When absent, the key is read from
    /// `master_key_file`, which is created (mode 0600) on first start. With PostgreSQL one of the
    /// two is required (there is no database file to put `master.key` beside), and every node
    /// must have the same key.
    #[serde(skip_serializing)]
    pub master_key: Option<SecretString>,
    /// Defaults to `master.key` beside the SQLite database file. `KHOA_MASTER_KEY_FILE`.
    pub master_key_file: Option<PathBuf>,
    pub password_hash: PasswordHashConfig,
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    /// Native TLS: HTTPS on `listen`.
    pub tls: TlsConfig,
    /// Signing keys: reloads, JWKS caching, rotation lead time.
    pub keys: KeysConfig,
    /// Seconds between expired-token clean-ups.
    pub purge_interval_secs: u64,
    /// Seconds a client record is cached in each node (0: no cache). Client changes made by
    /// another process (the CLI, another node) take effect within this time.
    pub client_cache_secs: i64,
    /// `tracing` filter, e.g. `info` or `khoa=debug`. `KHOA_LOG`. Whatever it says, the HTTP
    /// and database libraries stay at `info` unless named explicitly (`hyper=trace`): at trace
    /// level they print request bytes, credentials included.
    pub log: String,
    /// `text` (human-readable) or `json` (one JSON object per line). `KHOA_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// Names this node in audit events (several nodes may share a database). `KHOA_NODE`.
    pub node: Option<String>,
    /// `GET /metrics` in the Prometheus text format.
    pub metrics: MetricsConfig,
    /// The audit trail in the database (`khoa audit list`).
    pub audit: AuditConfig,
    /// The wire dialects: which are served, where, bound to which client.
    pub dialects: DialectsConfig,
    /// The forward-auth endpoint that nginx `auth_request`, Traefik `forwardAuth` or Envoy
    /// `ext_authz` call for every request they guard (`docs/forward-auth.md`).
    pub forward_auth: ForwardAuthConfig,
    /// The authorization endpoint (`/connect/authorize`, RFC 6749 §4.1).
    pub authorize: AuthorizeConfig,
    /// Locking an account after repeated failed sign-ins.
    pub lockout: LockoutConfig,
    /// Token buckets on every token endpoint.
    pub rate_limit: RateLimitConfig,
}

/// Brute-force protection: after `threshold` failed sign-ins in a row a username (known or
/// not) is locked for `base_secs`; each further failure after the lock ends doubles the lock,
/// up to `max_secs`. Failures more than `max_secs` apart start the count anew. While locked,
/// even the right password is refused; `khoa user unlock NAME` lifts a lock at once. The count
/// lives in the database, so every node shares it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockoutConfig {
    /// Failures that lock the account; 0 turns lockout off. `KHOA_LOCKOUT__THRESHOLD`.
    pub threshold: u32,
    /// Seconds of the first lock.
    pub base_secs: i64,
    /// Longest lock, and how long a failure is remembered.
    pub max_secs: i64,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            threshold: 5,
            base_secs: 60,
            max_secs: 3600,
        }
    }
}

/// Token buckets (GCRA) on every token endpoint of every dialect, on revocation,
/// introspection and the login form's POST. A request beyond a bucket is answered 429 with
/// `Retry-After` (RFC 6585 §4) in the dialect's own error shape. Each rate is requests per
/// second; 0 turns that bucket off (the default: size them for your partners). Buckets are per
/// node: with N nodes behind a balancer a key gets up to N times the rate.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Per `client_id` (dialects that bind all their users to one client share its bucket).
    pub per_client_per_sec: u32,
    /// Per `Partner-Code` of the encrypted dialect (seed 002).
    pub per_partner_per_sec: u32,
    /// Per source IP address: the TCP peer, or the `X-Forwarded-For` client when the peer is
    /// one of `trusted_proxies`.
    pub per_ip_per_sec: u32,
    /// Requests a bucket allows at once after a quiet spell; 0 means one second's worth.
    pub burst: u32,
    /// Reverse proxies whose `X-Forwarded-For` is believed (the right-most address not itself
    /// a trusted proxy is the client). Empty: the header is ignored, as anyone can send it.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// How log lines are written (to standard error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[metrics]`: `KHOA_METRICS__ENABLED`, `KHOA_METRICS__PATH`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve the metrics endpoint. It reveals traffic volumes, not secrets; keep it off the
    /// public side of the load balancer or turn it off.
    pub enabled: bool,
    pub path: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            path: "/metrics".into(),
        }
    }
}

/// `[audit]`: `KHOA_AUDIT__RETENTION_DAYS`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Days audit events are kept; older ones are deleted by the periodic clean-up. 0 keeps
    /// them forever.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { retention_days: 90 }
    }
}

/// The authorization code flow and its login page.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizeConfig {
    /// Seconds an authorization code stays redeemable (RFC 9700 §4.2: short). 1–600.
    /// `KHOA_AUTHORIZE__CODE_TTL_SECS`.
    pub code_ttl_secs: i64,
}

impl Default for AuthorizeConfig {
    fn default() -> Self {
        AuthorizeConfig { code_ttl_secs: 60 }
    }
}

/// `[dialects]`: `dir`, and a table per dialect, `[dialects.NAME]`, holding `enabled` and any
/// of the definition's `[settings]` (`khoa dialect show NAME` lists them). Which names and
/// settings exist is for the loaded definitions to say, so start-up
/// ([`crate::dialects::registry`]) refuses a table or a setting that none has. Token policy
/// (format, lifetimes, refresh, otp) belongs to the client a dialect is bound to (`khoa client
/// add …`); what is here is the wire: paths, bindings, error rendering.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct DialectsConfig {
    /// A directory of dialect definitions (`*.toml`, docs/dialects.md), each served beside
    /// the built-in dialects; a file named like a built-in replaces it. `KHOA_DIALECTS__DIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// `[dialects.NAME]`, by name.
    #[serde(flatten)]
    pub tables: BTreeMap<String, DialectTable>,
}

/// One `[dialects.NAME]` table.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct DialectTable {
    /// Serve the dialect. Built-ins other than `oauth2` are off until enabled; definition
    /// files are on unless disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Values for the definition's `[settings]`.
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl DialectsConfig {
    /// Turns the dialect `name` on.
    pub fn enable(&mut self, name: &str) -> &mut Self {
        self.tables.entry(name.to_owned()).or_default().enabled = Some(true);
        self
    }

    /// Turns the dialect `name` off.
    pub fn disable(&mut self, name: &str) -> &mut Self {
        self.tables.entry(name.to_owned()).or_default().enabled = Some(false);
        self
    }

    /// Sets one of the definition's settings, as `[dialects.NAME] KEY = VALUE` would.
    pub fn set(&mut self, name: &str, key: &str, value: impl Into<serde_json::Value>) -> &mut Self {
        self.tables
            .entry(name.to_owned())
            .or_default()
            .settings
            .insert(key.to_owned(), value.into());
        self
    }
}

/// `[forward_auth]`: `KHOA_FORWARD_AUTH__ENABLED`, `KHOA_FORWARD_AUTH__DEFAULT`, … The routes
/// are a TOML array of tables (`[[forward_auth.routes]]`); the first whose `prefix` and
/// `methods` match the original request decides.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardAuthConfig {
    /// Serve the endpoint (off by default: it answers only for the routes configured here).
    pub enabled: bool,
    /// Where it is served; `{path}/<original path>` works too (Envoy's `path_prefix`).
    pub path: String,
    /// What a request no route matches gets.
    pub default: ForwardAuthDefault,
    pub routes: Vec<ForwardAuthRoute>,
}

/// The answer for a request that no `[[forward_auth.routes]]` entry matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ForwardAuthDefault {
    /// 403, token or not: a path nobody wrote a rule for stays closed (the safe default).
    #[default]
    Deny,
    /// Any valid token passes, whatever its scopes.
    Authenticated,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardAuthRoute {
    /// Path prefix, matched on whole segments: `/api/orders` covers `/api/orders` and
    /// `/api/orders/7`, not `/api/ordersx`.
    pub prefix: String,
    /// Methods the route applies to (any when empty), e.g. `["POST", "DELETE"]`.
    pub methods: Vec<String>,
    /// Scopes the token must all carry.
    pub scopes: Vec<String>,
    /// Seed 000's rule: a method other than GET/HEAD/OPTIONS/TRACE also needs the session's
    /// `x-otp-token` when the token was issued with one.
    pub otp_on_mutating: bool,
}

impl Default for ForwardAuthConfig {
    fn default() -> Self {
        ForwardAuthConfig {
            enabled: false,
            path: "/auth/verify".into(),
            default: ForwardAuthDefault::Deny,
            routes: Vec::new(),
        }
    }
}

impl ForwardAuthConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        if !self.path.starts_with('/') || self.path.len() < 2 || self.path.ends_with('/') {
            return invalid(
                "forward_auth.path",
                "must be an absolute path without a trailing slash",
            );
        }
        for r in &self.routes {
            if !r.prefix.starts_with('/') || r.prefix.contains(char::is_whitespace) {
                return invalid(
                    "forward_auth.routes.prefix",
                    "must be an absolute path without spaces",
                );
            }
            if r.methods
                .iter()
                .any(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()))
            {
                return invalid(
                    "forward_auth.routes.methods",
                    "must be HTTP method names such as GET or POST",
                );
            }
            let one_scope =
                |s: &String| khoa_core::scope::ScopeSet::parse(s).is_ok_and(|set| set.len() == 1);
            if !r.scopes.iter().all(one_scope) {
                return invalid(
                    "forward_auth.routes.scopes",
                    "must be scope tokens (RFC 6749 §3.3), one per entry",
                );
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordHashConfig {
    /// Argon2id memory in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// Argon2id passes (OWASP: 2).
    pub iterations: u32,
    /// Argon2id lanes (OWASP: 1).
    pub parallelism: u32,
    /// Hashes computed at once; 0 means the number of CPU cores.
    pub max_concurrent: usize,
    /// Logins waiting for a hash slot; more get 503 with `Retry-After` at once. 0 means
    /// 8 × `max_concurrent`.
    pub max_queue: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// SQLite: read connections in the pool (writes go through one more). PostgreSQL: the
    /// whole pool, reads and writes; the nodes' pools together must fit the server's
    /// `max_connections`.
    pub max_connections: u32,
    /// SQLite: how long a statement waits for a lock another process holds. PostgreSQL: how
    /// long a request waits for a pooled connection, opening one included (at least 100 ms),
    /// and how long start-up waits to connect. Past it the request gets a 503.
    pub busy_timeout_ms: u64,
    /// SQLite only: most writes committed together in one transaction (group commit).
    pub batch_max: usize,
}

/// How a key rotation reaches every node and every JWKS cache before the new key signs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// Seconds between re-reads of the signing keys: a key scheduled by `khoa keys rotate`
    /// (or on another node) is published in this node's JWKS within this time, and used once
    /// it activates. Validation also looks again at once on an unknown `kid`.
    /// `KHOA_KEYS__RELOAD_SECS`.
    pub reload_secs: u64,
    /// `max-age` of the JWKS response (RFC 9111 §5.2.2.1): how long a resource server or
    /// proxy may use its copy without asking again.
    pub jwks_max_age_secs: u64,
    /// Seconds between `khoa keys rotate` and the moment the new key starts signing, while it
    /// is already published. At least `jwks_max_age_secs + reload_secs`, so that every node
    /// has loaded the key and every cache has refetched the JWKS before a token signed by it
    /// exists. `khoa keys rotate --lead` overrides it.
    pub rotation_lead_secs: u64,
}

impl KeysConfig {
    /// The shortest safe lead: a JWKS fetched just before a node learns of the new key
    /// (up to `reload_secs` after the rotation) may be cached `jwks_max_age_secs` longer.
    pub fn min_rotation_lead_secs(&self) -> u64 {
        self.jwks_max_age_secs.saturating_add(self.reload_secs)
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            reload_secs: 30,
            jwks_max_age_secs: 300,
            rotation_lead_secs: 600,
        }
    }
}

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

    fn validate(&self) -> Result<(), ConfigError> {
        let missing = match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Some(("tls.key_file", "tls.cert_file")),
            (None, Some(_)) => Some(("tls.cert_file", "tls.key_file")),
            _ => None,
        };
        if let Some((key, other)) = missing {
            return Err(ConfigError::Invalid {
                key,
                message: format!("must be set with {other}: TLS needs both files, or neither"),
            });
        }
        for (key, file) in [
            ("tls.cert_file", &self.cert_file),
            ("tls.key_file", &self.key_file),
        ] {
            if file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must name a file".into(),
                });
            }
        }
        Ok(())
    }
}

impl HttpConfig {
    /// `max_connections_per_ip`, or its default.
    pub fn max_connections_per_ip(&self) -> usize {
        self.max_connections_per_ip
            .unwrap_or(256.min(self.max_connections))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid default"),
            database_url: "sqlite://khoa.db".into(),
            issuer: None,
            audience: "khoa".into(),
            master_key: None,
            master_key_file: None,
            password_hash: PasswordHashConfig::default(),
            database: DatabaseConfig::default(),
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            keys: KeysConfig::default(),
            purge_interval_secs: 300,
            client_cache_secs: 5,
            log: "info".into(),
            log_format: LogFormat::Text,
            node: None,
            metrics: MetricsConfig::default(),
            audit: AuditConfig::default(),
            dialects: DialectsConfig::default(),
            forward_auth: ForwardAuthConfig::default(),
            authorize: AuthorizeConfig::default(),
            lockout: LockoutConfig::default(),
            rate_limit: RateLimitConfig::default(),
        }
    }
}

impl Default for PasswordHashConfig {
    fn default() -> Self {
        let p = PasswordParams::default();
        PasswordHashConfig {
            memory_kib: p.memory_kib,
            iterations: p.iterations,
            parallelism: p.parallelism,
            max_concurrent: 0,
            max_queue: 0,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            max_connections: 8,
            busy_timeout_ms: 5000,
            batch_max: 256,
        }
    }
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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(String),
    /// A key the configuration does not have, in a file or a `KHOA_*` variable.
    #[error("{origin}: unknown configuration key `{key}`{}", suggestion_text(.suggestion))]
    Unknown {
        /// `config file khoa.toml` or `environment variable KHOA_LISEN`.
        origin: String,
        key: String,
        suggestion: Option<String>,
    },
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// An IP address and a port, with a message that says so: the standard library's "invalid
/// socket address syntax" leaves `localhost:8080` a riddle.
fn listen_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
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

fn suggestion_text(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!("; did you mean {s}?"))
        .unwrap_or_default()
}

impl Config {
    /// Defaults, then `file` (if given), then `KHOA_*` variables; then validation.
    ///
    /// A key this configuration does not have is refused, in the file and in the environment
    /// alike, naming where it came from and the nearest valid key: a misspelt `lisen` or
    /// `enabeld` silently ignored would leave the default in force, the mistake unnoticed.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let schema = known_keys::Schema::of_defaults();
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist",
                    f.display()
                )));
            }
            // `file_exact`: `Toml::file` would look for a relative path in every parent
            // directory too, and read a file the operator did not name.
            let toml = Toml::file_exact(f);
            schema.check(&toml, &known_keys::Origin::File(f.to_path_buf()))?;
            fig = fig.merge(toml);
        }
        // The master key is taken verbatim: figment would read an all-digit hex key as a number.
        // `KHOA_CONFIG` is the command line's `--config`, not a key.
        let env = Env::prefixed("KHOA_")
            .ignore(&["MASTER_KEY", "CONFIG"])
            .split("__");
        schema.check(&env, &known_keys::Origin::Env)?;
        fig = fig.merge(env);
        if let Ok(key) = std::env::var("KHOA_MASTER_KEY") {
            fig = fig.merge(Serialized::default("master_key", key));
        }
        let cfg: Config = fig.extract().map_err(known_keys::describe)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        let scheme = self.database_url.split(':').next().unwrap_or_default();
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            return invalid("database_url", "must start with sqlite: or postgres:");
        }
        if scheme == "sqlite"
            && (self.sqlite_path().is_none() || self.database_url.contains("mode=memory"))
        {
            return invalid(
                "database_url",
                "an in-memory SQLite database loses every token, client and key when khoa \
                 stops; name a file instead, such as sqlite://khoa.db",
            );
        }
        if let Some(iss) = &self.issuer
            && !(iss.starts_with("https://") || iss.starts_with("http://"))
        {
            return invalid("issuer", "must be an http(s) URL");
        }
        if self.audience.is_empty() {
            return invalid("audience", "must not be empty");
        }
        let p = &self.password_hash;
        if p.memory_kib < 8 * p.parallelism.max(1) || p.iterations == 0 || p.parallelism == 0 {
            return invalid(
                "password_hash",
                "memory_kib must be at least 8 × parallelism, iterations and parallelism at least 1",
            );
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if self.database.batch_max == 0 {
            return invalid("database.batch_max", "must be at least 1");
        }
        if self.http.max_body_bytes < 256 {
            return invalid("http.max_body_bytes", "must be at least 256");
        }
        // hyper's own lower bound for its read buffer.
        if self.http.max_header_bytes < 8192 {
            return invalid("http.max_header_bytes", "must be at least 8192");
        }
        if self.http.header_read_timeout_secs == 0 {
            return invalid("http.header_read_timeout_secs", "must be at least 1");
        }
        if self.http.request_timeout_secs == 0 {
            return invalid("http.request_timeout_secs", "must be at least 1");
        }
        if self.http.max_connections == 0 {
            return invalid("http.max_connections", "must be at least 1");
        }
        if let Some(per_ip) = self.http.max_connections_per_ip
            && !(1..=self.http.max_connections).contains(&per_ip)
        {
            return invalid(
                "http.max_connections_per_ip",
                &format!(
                    "must be between 1 and http.max_connections ({})",
                    self.http.max_connections
                ),
            );
        }
        self.tls.validate()?;
        let l = &self.lockout;
        if l.threshold > 0 && l.base_secs < 1 {
            return invalid("lockout.base_secs", "must be at least 1");
        }
        if l.threshold > 0 && l.max_secs < l.base_secs {
            return invalid("lockout.max_secs", "must be at least lockout.base_secs");
        }
        if !self.metrics.path.starts_with('/') || self.metrics.path.contains(char::is_whitespace) {
            return invalid("metrics.path", "must be an absolute path without spaces");
        }
        // Two routes on one path would make the router panic at start-up; say which keys clash.
        // The dialects' paths are checked against these and each other when they are loaded.
        let fixed = [
            "/healthz",
            "/readyz",
            "/api/protected-resource",
            "/.well-known/jwks.json",
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
            "/connect/authorize",
            "/connect/userinfo",
        ];
        let mut seen: Vec<(&str, &str)> = fixed.iter().map(|p| ("a built-in route", *p)).collect();
        let configured = [
            self.forward_auth
                .enabled
                .then_some(("forward_auth.path", self.forward_auth.path.as_str())),
            self.metrics
                .enabled
                .then_some(("metrics.path", self.metrics.path.as_str())),
        ];
        for (key, path) in configured.into_iter().flatten() {
            if let Some((other, _)) = seen.iter().find(|(_, p)| *p == path) {
                return invalid(key, &format!("{path} is already the path of {other}"));
            }
            seen.push((key, path));
        }
        if !(1..=600).contains(&self.authorize.code_ttl_secs) {
            return invalid(
                "authorize.code_ttl_secs",
                "must be between 1 and 600 (RFC 6749 §4.1.2: at most ten minutes)",
            );
        }
        if self.client_cache_secs < 0 {
            return invalid("client_cache_secs", "must not be negative");
        }
        if self.keys.reload_secs == 0 {
            return invalid("keys.reload_secs", "must be at least 1 second");
        }
        if self.purge_interval_secs == 0 {
            return invalid("purge_interval_secs", "must be at least 1 second");
        }
        if self.keys.rotation_lead_secs < self.keys.min_rotation_lead_secs() {
            return invalid(
                "keys.rotation_lead_secs",
                &format!(
                    "must be at least keys.jwks_max_age_secs + keys.reload_secs ({} s), so that \
                     every node and every JWKS cache knows the next key before it signs",
                    self.keys.min_rotation_lead_secs()
                ),
            );
        }
        self.forward_auth.validate()
    }

    pub fn issuer(&self) -> String {
        let scheme = if self.tls.enabled() { "https" } else { "http" };
        self.issuer
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    pub fn lockout_policy(&self) -> khoa_core::store::LockoutPolicy {
        khoa_core::store::LockoutPolicy {
            threshold: self.lockout.threshold,
            base_secs: self.lockout.base_secs,
            max_secs: self.lockout.max_secs,
        }
    }

    pub fn password_params(&self) -> PasswordParams {
        PasswordParams {
            memory_kib: self.password_hash.memory_kib,
            iterations: self.password_hash.iterations,
            parallelism: self.password_hash.parallelism,
        }
    }

    pub fn password_concurrency(&self) -> usize {
        match self.password_hash.max_concurrent {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    pub fn password_queue(&self) -> usize {
        match self.password_hash.max_queue {
            0 => 8 * self.password_concurrency(),
            n => n,
        }
    }

    /// The SQLite database file named by `database_url`, if it names one.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let rest = self.database_url.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }

    /// Where the master key file lives when `KHOA_MASTER_KEY` is not set.
    pub fn master_key_path(&self) -> Option<PathBuf> {
        self.master_key_file.clone().or_else(|| {
            let db = self.sqlite_path()?;
            let dir = db.parent().filter(|p| !p.as_os_str().is_empty());
            Some(dir.map_or_else(|| PathBuf::from("master.key"), |d| d.join("master.key")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://khoa.db");
        assert_eq!(c.issuer(), "http://127.0.0.1:8080");
        assert_eq!(c.master_key_path().unwrap(), PathBuf::from("master.key"));
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        let mut c = Config {
            database_url: "sqlite:///var/lib/khoa/k.db?mode=rwc".into(),
            ..Config::default()
        };
        assert_eq!(
            c.sqlite_path().unwrap(),
            PathBuf::from("/var/lib/khoa/k.db")
        );
        assert_eq!(
            c.master_key_path().unwrap(),
            PathBuf::from("/var/lib/khoa/master.key")
        );
        c.database_url = "postgres://u@h/db".into();
        assert_eq!(c.sqlite_path(), None);
        assert_eq!(c.master_key_path(), None);
    }

    #[test]
    fn an_in_memory_sqlite_database_is_refused() {
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://k.db?mode=memory",
        ] {
            let c = Config {
                database_url: url.into(),
                ..Config::default()
            };
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains("database_url") && e.contains("in-memory"),
                "{url}: {e}"
            );
        }
    }

    /// Loads `toml` (if any) as the config file under `jail`, and returns the refusal.
    #[allow(
        clippy::result_large_err,
        reason = "figment's Jail API returns its own error"
    )]
    fn refusal(jail: &mut figment::Jail, toml: Option<&str>) -> String {
        let file = toml.map(|t| {
            jail.create_file("khoa.toml", t).unwrap();
            Path::new("khoa.toml")
        });
        Config::load(file).unwrap_err().to_string()
    }

    #[test]
    #[allow(
        clippy::result_large_err,
        reason = "figment's Jail API returns its own error"
    )]
    fn unknown_keys_in_the_file_are_refused_naming_the_file_and_the_nearest_key() {
        figment::Jail::expect_with(|jail| {
            let e = refusal(jail, Some("lisen = \"127.0.0.1:18091\"\n"));
            assert!(e.contains("config file khoa.toml"), "{e}");
            assert!(
                e.contains("`lisen`") && e.contains("did you mean listen?"),
                "{e}"
            );

            let e = refusal(jail, Some("[dialects.bankhub]\nenabeld = true\n"));
            assert!(e.contains("`dialects.bankhub.enabeld`"), "{e}");
            assert!(e.contains("did you mean dialects.bankhub.enabled?"), "{e}");

            // The right name in the wrong table.
            let e = refusal(jail, Some("max_body_bytes = 4096\n"));
            assert!(e.contains("did you mean http.max_body_bytes?"), "{e}");

            // Nothing near: refused all the same, without a guess.
            let e = refusal(jail, Some("[http]\ncompletely_different = 1\n"));
            assert!(e.contains("`http.completely_different`"), "{e}");
            assert!(!e.contains("did you mean"), "{e}");

            // Inside an array of tables too.
            let e = refusal(
                jail,
                Some("[[forward_auth.routes]]\nprefix = \"/api\"\nscope = [\"a\"]\n"),
            );
            assert!(e.contains("`forward_auth.routes.scope`"), "{e}");
            assert!(
                e.contains("did you mean forward_auth.routes.scopes?"),
                "{e}"
            );
            Ok(())
        });
    }

    #[test]
    #[allow(
        clippy::result_large_err,
        reason = "figment's Jail API returns its own error"
    )]
    fn unknown_khoa_variables_are_refused_naming_the_variable_and_the_nearest_one() {
        figment::Jail::expect_with(|jail| {
            // Not keys: the command line's --config, and the verbatim master key.
            jail.set_env("KHOA_CONFIG", "elsewhere.toml");
            jail.set_env("KHOA_MASTER_KEY", "00".repeat(32));
            Config::load(None).unwrap();

            jail.set_env("KHOA_LISEN", "127.0.0.1:18091");
            let e = refusal(jail, None);
            assert!(e.contains("environment variable KHOA_LISEN"), "{e}");
            assert!(e.contains("did you mean KHOA_LISTEN?"), "{e}");
            jail.clear_env();

            jail.set_env("KHOA_DIALECTS__BANKHUB__ENABEL", "true");
            let e = refusal(jail, None);
            assert!(e.contains("KHOA_DIALECTS__BANKHUB__ENABEL"), "{e}");
            assert!(
                e.contains("did you mean KHOA_DIALECTS__BANKHUB__ENABLED?"),
                "{e}"
            );
            jail.clear_env();

            // A table of another name is a definition file's: loaded here, checked against
            // the definitions at start-up (dialects::registry).
            jail.set_env("KHOA_DIALECTS__CASSO__CLIENT", "casso-prod");
            jail.set_env("KHOA_DIALECTS__CASSO__ENABLED", "false");
            let c = Config::load(None).expect("a file dialect's table loads");
            let casso = &c.dialects.tables["casso"];
            assert_eq!(casso.enabled, Some(false));
            assert_eq!(casso.settings["client"], "casso-prod");
            Ok(())
        });
    }

    #[test]
    #[allow(
        clippy::result_large_err,
        reason = "figment's Jail API returns its own error"
    )]
    fn a_bad_value_names_its_key_and_source_without_the_profile() {
        figment::Jail::expect_with(|jail| {
            let e = refusal(jail, Some("listen = \"localhost:8080\"\n"));
            assert!(e.contains("config file khoa.toml, key `listen`"), "{e}");
            assert!(
                e.contains("an IP address and a port, such as 127.0.0.1:8080"),
                "{e}"
            );
            assert!(!e.contains("default."), "{e}");

            let e = refusal(jail, Some("[http]\nmax_body_bytes = \"big\"\n"));
            assert!(e.contains("key `http.max_body_bytes`"), "{e}");
            assert!(!e.contains("default."), "{e}");

            jail.set_env("KHOA_LISTEN", "8080");
            let e = refusal(jail, None);
            assert!(e.contains("environment variable KHOA_LISTEN"), "{e}");
            assert!(e.contains("`8080` is not an address to listen on"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn a_route_on_a_built_in_path_is_refused_naming_its_key() {
        // Two dialect endpoints on one path: dialects::registry's tests.
        let mut c = Config::default();
        c.forward_auth.enabled = true;
        c.forward_auth.path = "/healthz".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("forward_auth.path"), "{e}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let c = Config {
            database_url: "mysql://x".into(),
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("database_url")
        );
        let c = Config {
            issuer: Some("ftp://x".into()),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("issuer"));
    }

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

    #[test]
    fn the_default_rotation_lead_must_cover_reloads_and_jwks_caching() {
        let c = Config::default();
        assert_eq!(c.keys.min_rotation_lead_secs(), 330);
        let mut c = Config::default();
        c.keys.rotation_lead_secs = 329;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("keys.rotation_lead_secs"), "{err}");
        c.keys.rotation_lead_secs = 330;
        c.validate().unwrap();
        c.keys.reload_secs = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("keys.reload_secs")
        );
    }

    #[test]
    #[allow(
        clippy::result_large_err,
        reason = "figment's Jail API returns its own error"
    )]
    fn file_and_environment_layers_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "khoa.toml",
                "audience = \"from-file\"\n[http]\nmax_body_bytes = 4096\n",
            )?;
            jail.set_env("KHOA_AUDIENCE", "from-env");
            jail.set_env("KHOA_PASSWORD_HASH__ITERATIONS", "3");
            jail.set_env("KHOA_KEYS__JWKS_MAX_AGE_SECS", "1");
            let c = Config::load(Some(Path::new("khoa.toml"))).unwrap();
            assert_eq!(c.keys.jwks_max_age_secs, 1);
            assert_eq!(c.audience, "from-env");
            assert_eq!(c.http.max_body_bytes, 4096);
            assert_eq!(c.password_hash.iterations, 3);
            let digits = "0123456789".repeat(6) + "0123";
            jail.set_env("KHOA_MASTER_KEY", &digits);
            let c = Config::load(None).unwrap();
            assert_eq!(
                c.master_key
                    .as_ref()
                    .map(secrecy::ExposeSecret::expose_secret),
                Some(digits.as_str()),
                "an all-digit key stays a string"
            );
            jail.set_env("KHOA_LISTEN", "not-an-address");
            let err = Config::load(None).unwrap_err().to_string();
            // figment names an environment key in upper case (`LISTEN`).
            assert!(err.to_ascii_lowercase().contains("listen"), "{err}");
            Ok(())
        });
    }
}
