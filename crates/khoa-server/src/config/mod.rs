//! The one typed configuration: defaults → TOML file → `KHOA_*` environment variables
//! (nested keys with `__`, e.g. `KHOA_PASSWORD_HASH__MEMORY_KIB`). Validated once at start-up;
//! an invalid value stops the process with a message that names the key.
//!
//! Here: [`Config`], the top-level keys, loading the layers and the checks that span sections.
//! Each `[section]` has a file of its own with its struct and its `validate()`; the key
//! walker that refuses an unknown key is `known_keys`.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use khoa_core::password::PasswordParams;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod audit;
mod authorize;
mod database;
mod dialects;
mod forward_auth;
mod http;
mod keys;
pub(crate) mod known_keys;
mod limits;
mod metrics;
mod password;

pub use audit::AuditConfig;
pub use authorize::AuthorizeConfig;
pub use database::DatabaseConfig;
pub use dialects::{DialectTable, DialectsConfig};
pub use forward_auth::{ForwardAuthConfig, ForwardAuthDefault, ForwardAuthRoute};
pub use http::{HttpConfig, TlsConfig, parse_listen};
pub use keys::KeysConfig;
pub use limits::RateLimitConfig;
pub use metrics::MetricsConfig;
pub use password::{LockoutConfig, PasswordHashConfig};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on: an IP address and a port. `KHOA_LISTEN`.
    #[serde(deserialize_with = "http::listen_addr")]
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
    /// For tests only, never in production: a file holding the seconds by which this
    /// process's clock runs ahead of the wall clock, re-read every 50 ms (a CLI verb reads it
    /// once). Lets a test move the time of running nodes instead of waiting for it; a missing
    /// file is 0, a file that is not an integer is refused. `KHOA_DANGER_CLOCK_FILE`.
    pub danger_clock_file: Option<PathBuf>,
}

/// How log lines are written (to standard error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
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
            danger_clock_file: None,
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

/// The refusal of one key's value, as every section's `validate()` writes it.
fn invalid(key: &'static str, message: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key,
        message: message.into(),
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
        database::validate_url(&self.database_url)?;
        if let Some(iss) = &self.issuer
            && !(iss.starts_with("https://") || iss.starts_with("http://"))
        {
            return invalid("issuer", "must be an http(s) URL");
        }
        if self.audience.is_empty() {
            return invalid("audience", "must not be empty");
        }
        self.password_hash.validate()?;
        self.database.validate()?;
        self.http.validate()?;
        self.tls.validate()?;
        self.lockout.validate()?;
        self.metrics.validate()?;
        self.validate_paths()?;
        self.authorize.validate()?;
        if self.client_cache_secs < 0 {
            return invalid("client_cache_secs", "must not be negative");
        }
        if self.purge_interval_secs == 0 {
            return invalid("purge_interval_secs", "must be at least 1 second");
        }
        self.keys.validate()?;
        self.forward_auth.validate()
    }

    /// Two routes on one path would make the router panic at start-up; say which keys clash.
    /// The dialects' paths are checked against these and each other when they are loaded.
    fn validate_paths(&self) -> Result<(), ConfigError> {
        let mut seen: Vec<(&str, &str)> = crate::dialects::registry::KHOA_PATHS
            .iter()
            .map(|p| ("a built-in route", *p))
            .collect();
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
                return invalid(key, format!("{path} is already the path of {other}"));
            }
            seen.push((key, path));
        }
        Ok(())
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
        self.lockout.policy()
    }

    pub fn password_params(&self) -> PasswordParams {
        self.password_hash.params()
    }

    pub fn password_concurrency(&self) -> usize {
        self.password_hash.concurrency()
    }

    pub fn password_queue(&self) -> usize {
        self.password_hash.queue()
    }

    /// The SQLite database file named by `database_url`, if it names one.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        database::sqlite_path(&self.database_url)
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
    fn a_route_on_a_built_in_path_is_refused_naming_its_key() {
        // Two dialect endpoints on one path: dialects::registry's tests.
        let mut c = Config::default();
        c.forward_auth.enabled = true;
        c.forward_auth.path = "/healthz".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("forward_auth.path"), "{e}");
    }

    #[test]
    fn every_path_of_khoas_own_routes_is_refused_to_metrics() {
        // Each one, `/openapi.json` included: the check reads the registry's list, not a copy.
        for path in crate::dialects::registry::KHOA_PATHS {
            let mut c = Config::default();
            c.metrics.path = path.into();
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains("`metrics.path`") && e.contains("a built-in route"),
                "{path}: {e}"
            );
        }
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
