//! The PostgreSQL backend: connection settings, the pool and error mapping.
//!
//! Unlike SQLite there is no single writer here: several khoa nodes share the database, so no
//! process could funnel every write anyway. Each write is its own transaction on the pool, and
//! what must not race (rotation, the first signing key) is made safe by the statements
//! themselves — conditional updates and unique indexes — not by anything held in a process.

mod audit;
mod client_keys;
mod clients;
mod codes;
mod keys;
mod login_failures;
mod partners;
mod tokens;
mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use khoa_core::store::{PoolConnections, Readiness, StoreError, Stores};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{ConnectOptions, Connection};

use crate::{StoreOptions, migrations};

/// The shortest wait for a pooled connection, whatever `busy_timeout` says: a zero timeout
/// would fail every request before the pool could even hand out an idle connection.
const MIN_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(100);

pub(crate) async fn connect(url: &str, opts: &StoreOptions) -> Result<Stores, StoreError> {
    let options = connect_options(url)?;
    let acquire_timeout = opts.busy_timeout.max(MIN_ACQUIRE_TIMEOUT);
    // Migrate over one connection of our own first: its error says what is wrong (refused,
    // authentication, no such database), where a pool would only report a timeout.
    let mut conn = connect_once(&options, acquire_timeout).await?;
    migrations::migrator(migrations::POSTGRES)
        .run(&mut conn)
        .await
        .map_err(|e| migrations::error(e, map_err))?;
    conn.close().await.store_err()?;
    let pool = PgPoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        // A dead database must cost a request `busy_timeout`, not a hang: acquiring includes
        // opening a connection, which sqlx retries until this deadline while it is refused.
        .acquire_timeout(acquire_timeout)
        // The default, and what recovery rests on: a connection that went stale while the
        // database was away is pinged when taken from the pool, found dead and replaced, so the
        // node serves again as soon as the database is back, without a restart.
        .test_before_acquire(true)
        .connect_with(options)
        .await
        .store_err()?;
    tracing::info!(
        max_connections = opts.max_connections,
        acquire_timeout_ms = acquire_timeout.as_millis() as u64,
        "PostgreSQL store ready"
    );
    Ok(Stores {
        client_keys: Arc::new(client_keys::PgClientKeys(pool.clone())),
        users: Arc::new(users::PgUsers(pool.clone())),
        clients: Arc::new(clients::PgClients(pool.clone())),
        tokens: Arc::new(tokens::PgTokens(pool.clone())),
        keys: Arc::new(keys::PgKeys(pool.clone())),
        partners: Arc::new(partners::PgPartners(pool.clone())),
        codes: Arc::new(codes::PgCodes(pool.clone())),
        login_failures: Arc::new(login_failures::PgLoginFailures(pool.clone())),
        audit: Arc::new(audit::PgAudit::new(pool.clone())),
        readiness: Arc::new(PgReadiness(pool)),
    })
}

pub(crate) async fn migrate(url: &str, opts: &StoreOptions) -> Result<(), StoreError> {
    let options = connect_options(url)?;
    let mut conn = connect_once(&options, opts.busy_timeout.max(MIN_ACQUIRE_TIMEOUT)).await?;
    migrations::migrator(migrations::POSTGRES)
        .run(&mut conn)
        .await
        .map_err(|e| migrations::error(e, map_err))?;
    conn.close().await.store_err()
}

fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    // sqlx's parse errors describe the fault, not the URL, so no password leaks through them.
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| crate::driver_failure("invalid PostgreSQL URL", e))?;
    // Lets an operator tell khoa's sessions apart in `pg_stat_activity`.
    Ok(if options.get_application_name().is_none() {
        options.application_name("khoa")
    } else {
        options
    })
}

/// One connection, given up after `timeout` (a TCP connect to a host that drops packets would
/// otherwise wait for the kernel's own, much longer, timeout).
async fn connect_once(
    options: &PgConnectOptions,
    timeout: Duration,
) -> Result<sqlx::PgConnection, StoreError> {
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(conn) => conn.store_err(),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no connection to PostgreSQL within {} ms",
            timeout.as_millis()
        ))),
    }
}

struct PgReadiness(PgPool);

#[async_trait::async_trait]
impl Readiness for PgReadiness {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.0)
            .await
            .store_err()
            .map(drop)
    }

    fn pool_connections(&self) -> Option<PoolConnections> {
        Some(PoolConnections {
            open: self.0.size(),
            idle: self.0.num_idle() as u32,
            max: self.0.options().get_max_connections(),
        })
    }
}

/// Every unique constraint a caller may run into, and the name its `Conflict` carries: the
/// names the SQLite backend reports, so the edge needs no backend-specific case. The
/// constraint names are fixed by `migrations/postgres/0001_init.sql`.
const CONFLICTS: &[(&str, &str)] = &[
    ("users_username_key", "username"),
    ("clients_pkey", "client_id"),
    ("signing_keys_pkey", "kid"),
    ("partners_pkey", "partner_code"),
    ("partner_keys_pkey", "key_id"),
    ("client_keys_pkey", "client_key"),
];

/// SQLSTATEs that say "the database is away or busy; the same request may succeed later"
/// (https://www.postgresql.org/docs/current/errcodes-appendix.html). Class 08 is matched whole.
const TRANSIENT: &[&str] = &[
    // admin_shutdown, crash_shutdown, cannot_connect_now: a server stopping or starting.
    "57P01", "57P02", "57P03", // too_many_connections: other nodes hold every slot.
    "53300",
    // serialization_failure, deadlock_detected: the transaction lost a race and was rolled
    // back whole (the rule on CockroachDB, which runs SERIALIZABLE; on PostgreSQL a purge
    // deleting a session-ended family while that family's token rotates can deadlock).
    "40001", "40P01",
];

/// The one place where `sqlx` errors become [`StoreError`]s.
trait ResultExt<T> {
    fn store_err(self) -> Result<T, StoreError>;
}

impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn store_err(self) -> Result<T, StoreError> {
        self.map_err(map_err)
    }
}

fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                let named = db
                    .constraint()
                    .and_then(|c| CONFLICTS.iter().find(|(constraint, _)| *constraint == c));
                if let Some((_, name)) = named {
                    return StoreError::Conflict((*name).to_owned());
                }
            }
            if db.code().as_deref().is_some_and(is_transient) {
                StoreError::Unavailable(e.to_string())
            } else {
                crate::driver_failure("PostgreSQL", e)
            }
        }
        // Refused, reset or timed-out connections, and a pool with nothing to give.
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        _ => crate::driver_failure("PostgreSQL", e),
    }
}

fn is_transient(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") || TRANSIENT.contains(&sqlstate)
}

/// Whether a statement touched a row: the answer of every "returns whether" method.
fn changed(result: PgQueryResult) -> bool {
    result.rows_affected() > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_shutdown_states_are_transient() {
        for code in [
            "08000", "08001", "08006", "57P01", "57P02", "57P03", "53300",
        ] {
            assert!(is_transient(code), "{code}");
        }
        // unique_violation, undefined_table, syntax_error: retrying will not help.
        for code in ["23505", "42P01", "42601"] {
            assert!(!is_transient(code), "{code}");
        }
    }

    #[test]
    fn pool_and_io_failures_are_unavailable() {
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
        ] {
            assert!(matches!(map_err(e), StoreError::Unavailable(_)));
        }
        assert!(matches!(
            map_err(sqlx::Error::RowNotFound),
            StoreError::Other(_)
        ));
    }

    #[test]
    fn every_named_conflict_is_a_constraint_of_the_schema() {
        let schema = [
            include_str!("../../migrations/postgres/0001_init.sql"),
            include_str!("../../migrations/postgres/0009_client_keys.sql"),
        ]
        .concat();
        for (constraint, _) in CONFLICTS {
            assert!(
                schema.contains(&format!("CONSTRAINT {constraint} ")),
                "{constraint} is named in the schema"
            );
        }
    }

    #[test]
    fn a_url_that_does_not_parse_is_refused_without_echoing_it() {
        let err = connect_options("postgres://khoa:s3cret@db:notaport/khoa").unwrap_err();
        assert!(
            matches!(&err, StoreError::Other(_))
                && !khoa_core::error::chain(&err).contains("s3cret"),
            "{err:?}"
        );
    }
}
