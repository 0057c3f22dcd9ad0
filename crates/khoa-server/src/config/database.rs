//! `database_url` and `[database]`: which database, and how its pool and SQLite's group commit
//! are sized.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::{ConfigError, invalid};

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

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            max_connections: 8,
            busy_timeout_ms: 5000,
            batch_max: 256,
        }
    }
}

impl DatabaseConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if self.batch_max == 0 {
            return invalid("database.batch_max", "must be at least 1");
        }
        Ok(())
    }
}

/// `database_url` names a backend khoa has, and a database that outlives the process.
pub(super) fn validate_url(url: &str) -> Result<(), ConfigError> {
    let scheme = url.split(':').next().unwrap_or_default();
    if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
        return invalid("database_url", "must start with sqlite: or postgres:");
    }
    if scheme == "sqlite" && (sqlite_path(url).is_none() || url.contains("mode=memory")) {
        return invalid(
            "database_url",
            "an in-memory SQLite database loses every token, client and key when khoa \
             stops; name a file instead, such as sqlite://khoa.db",
        );
    }
    Ok(())
}

/// The SQLite database file `url` names, if it names one.
pub(super) fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::PathBuf;

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
}
