//! The schema's migrations: one list per backend, made by `build.rs` from the files in
//! `migrations/<backend>/`, and the one way they run.
//!
//! sqlx's migrator records what ran in `_sqlx_migrations` together with a checksum, so
//! re-running is a no-op and an edited, already-applied migration is refused rather than
//! silently skipped. On PostgreSQL it holds an advisory lock while it runs, so nodes starting
//! together apply each migration once. Versions need not be contiguous: a backend lacks a
//! version that only another needs (SQLite's 8, its readiness probe).

use sqlx::SqlSafeStr;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};

use khoa_core::store::StoreError;

/// One schema change as a backend has it.
pub(crate) struct Step {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

// `SQLITE` and `POSTGRES`: the steps of each backend, in version order.
include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The migrator of a backend's steps.
pub(crate) fn migrator(steps: &[Step]) -> Migrator {
    Migrator::with_migrations(
        steps
            .iter()
            .map(|step| {
                Migration::new(
                    step.version,
                    step.name.into(),
                    MigrationType::Simple,
                    step.sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// A failed migration as a [`StoreError`]: a statement's failure as the backend maps its
/// errors (`map_err`: a database that went away is still `Unavailable`), anything else (an
/// edited migration, a database newer than this binary) as `Other`, with its cause.
pub(crate) fn error(e: MigrateError, map_err: fn(sqlx::Error) -> StoreError) -> StoreError {
    match e {
        MigrateError::Execute(e) => map_err(e),
        other => crate::driver_failure("migration failed", other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(steps: &[Step]) -> Vec<(i64, &str)> {
        steps.iter().map(|s| (s.version, s.name)).collect()
    }

    #[test]
    fn the_lists_are_the_files_in_version_order_and_the_backends_agree() {
        let sqlite = versions(SQLITE);
        assert_eq!(sqlite.first(), Some(&(1, "init")));
        assert!(sqlite.windows(2).all(|w| w[0].0 < w[1].0), "{sqlite:?}");
        // PostgreSQL has every SQLite change but the readiness probe's table, under the same
        // version and name: a change made for one backend only is a decision, said here.
        let postgres = versions(POSTGRES);
        let sqlite_only: Vec<_> = sqlite.iter().filter(|s| !postgres.contains(s)).collect();
        assert_eq!(sqlite_only, [&(8, "readiness_probe")]);
        assert!(postgres.iter().all(|s| sqlite.contains(s)), "{postgres:?}");
        assert!(SQLITE.iter().all(|s| !s.sql.trim().is_empty()));
    }
}
