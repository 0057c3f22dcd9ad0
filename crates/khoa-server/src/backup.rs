//! `khoa backup --to FILE`: a consistent copy of the live SQLite database, taken while the
//! server runs ([`khoa_store::backup_sqlite`] does the copy), and a plain word on the master
//! key, without which the copy's signing and partner keys cannot be decrypted.

use anyhow::{Context, Result, bail};
use khoa_store::{BackupOptions, backup_sqlite};
use std::path::Path;

use crate::cli::BackupArgs;
use crate::config::Config;

/// What `khoa backup` says to a PostgreSQL operator: the database server has its own tools,
/// and they are the right ones (a consistent dump without stopping the nodes).
pub const POSTGRES_ADVICE: &str = "khoa backup copies SQLite databases only; back up \
     PostgreSQL with its own tools: `pg_dump --format=custom --file=khoa.dump \"$DATABASE_URL\"` \
     while the nodes run, and `pg_restore --clean --if-exists --dbname=\"$DATABASE_URL\" \
     khoa.dump` to restore. Keep the master key (KHOA_MASTER_KEY or master_key_file) with the \
     dump: without it the dump cannot decrypt signing keys or partner keys";

pub async fn run(config: &Config, args: BackupArgs) -> Result<()> {
    let Some(source) = config.sqlite_path() else {
        // Validation admits only sqlite: and postgres: URLs; never print the URL (a password).
        bail!("{POSTGRES_ADVICE}");
    };
    let opts = BackupOptions {
        overwrite: args.force,
        pages_per_step: args.step_pages,
        busy_timeout: std::time::Duration::from_millis(config.database.busy_timeout_ms),
        ..BackupOptions::default()
    };
    let target = args.to.clone();
    let report = tokio::task::spawn_blocking(move || backup_sqlite(&source, &target, &opts))
        .await
        .context("the backup thread")??;
    println!(
        "wrote {} ({} bytes, {} pages in {} steps, integrity_check ok)",
        shown(&report.path).display(),
        report.bytes,
        report.pages,
        report.steps
    );
    println!("{}", master_key_reminder(config));
    Ok(())
}

/// Where the master key is, never the key itself.
fn master_key_reminder(config: &Config) -> String {
    const WHY: &str = "a backup without it cannot decrypt signing keys or partner keys";
    if std::env::var_os("KHOA_MASTER_KEY").is_some() {
        format!(
            "keep the master key too: it is set by KHOA_MASTER_KEY (not in any file); store a \
             copy apart from the backup — {WHY}"
        )
    } else if config.master_key.is_some() {
        format!(
            "keep the master key too: it is `master_key` in the configuration file; store a \
             copy apart from the backup — {WHY}"
        )
    } else {
        match config.master_key_path() {
            Some(path) => format!(
                "keep the master key file too: {} — {WHY}",
                shown(&path).display()
            ),
            None => format!("keep the master key too — {WHY}"),
        }
    }
}

/// The absolute path when it can be had: the reminder is read later, from elsewhere.
fn shown(path: &Path) -> std::borrow::Cow<'_, Path> {
    std::fs::canonicalize(path).map_or(path.into(), Into::into)
}
