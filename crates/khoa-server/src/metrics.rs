//! `GET /metrics`: khoa's counters and histograms in the Prometheus text format.
//!
//! One [`Metrics`] per server (in [`crate::state::AppState`]), not a process-wide registry, so
//! that every test server counts its own requests. Where the numbers come from:
//!
//! - HTTP requests and their latency: the middleware in [`crate::telemetry`], labelled by the
//!   matched route template (never the raw URI: ids in paths would make a series per request)
//!   and the dialect that route belongs to.
//! - Tokens issued, refresh reuse, lockouts: the audit events the engine records, seen on
//!   their way to the store ([`MeteredAudit`]), so that whatever the engine audits is counted
//!   once, by one rule. The dialect of a token comes from the request being served (a task
//!   local the middleware sets).
//! - Database latency: every call of the token, user, client and code stores, timed by a
//!   decorator ([`instrument`]); pool use, group commit (SQLite) and shed logins are read when
//!   scraped.
//! - Rate-limit rejections: [`Metrics::rate_limited`], for the rate limiter to call.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use khoa_core::model::{Client, UnixTime, User};
use khoa_core::store::Family as TokenFamily;
use khoa_core::store::{
    AccessState, AuditEvent, AuditFilter, AuditKind, AuditStore, AuthCode, AuthCodeState,
    AuthCodeStore, ClientStore, Issuance, NewUser, RedeemOutcome, RefreshState, RevokedJwt,
    RotateOutcome, Rotation, StoreError, Stores, TokenStore, UserStore,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    dialect: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    dialect: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    dialect: &'static str,
    grant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DialectLabels {
    dialect: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// The one label of the group-commit counters: only a backend that batches writes (SQLite)
/// has a series, so that PostgreSQL does not show a misleading zero.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds, 0.5 ms to 10 s: a JWT is minted in well under a millisecond, a login takes an
/// Argon2 hash (tens of ms), a request timing out takes seconds.
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// Seconds, 50 µs to 2.5 s: a cached read on SQLite is tens of microseconds, a group commit
/// one fsync (milliseconds), a PostgreSQL round trip in between.
fn db_histogram() -> Histogram {
    Histogram::new([
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        2.5,
    ])
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RouteLabels>,
    tokens_issued: Family<TokenLabels, Counter>,
    refresh_reuse: Counter,
    lockouts: Counter,
    rate_limited: Family<DialectLabels, Counter>,
    shed: Counter,
    db_duration: HistogramFamily<OpLabels>,
    db_pool: Family<StateLabels, Gauge>,
    db_commits: Family<BackendLabels, Counter>,
    db_write_jobs: Family<BackendLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::default();
        // The library appends `_total` to counters and the unit to histograms.
        registry.register(
            "khoa_http_requests",
            "HTTP requests by matched route, dialect and status",
            requests.clone(),
        );
        let request_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "khoa_http_request_duration",
            "Time from request to response",
            Unit::Seconds,
            request_duration.clone(),
        );
        let tokens_issued = Family::default();
        registry.register(
            "khoa_tokens_issued",
            "Token responses by dialect and grant",
            tokens_issued.clone(),
        );
        let refresh_reuse = Counter::default();
        registry.register(
            "khoa_refresh_reuse_detected",
            "Redeemed refresh tokens or codes presented again outside the retry window",
            refresh_reuse.clone(),
        );
        let lockouts = Counter::default();
        registry.register(
            "khoa_lockouts",
            "Accounts or clients locked out after repeated failures",
            lockouts.clone(),
        );
        let rate_limited = Family::default();
        registry.register(
            "khoa_rate_limited",
            "Requests refused by a rate limit, by dialect",
            rate_limited.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "khoa_shed",
            "Logins refused at once (503) because the password-hashing pool was full",
            shed.clone(),
        );
        let db_duration: HistogramFamily<OpLabels> = Family::new_with_constructor(db_histogram);
        registry.register_with_unit(
            "khoa_db_query_duration",
            "Time of one store call (a query, or a write until committed), by operation",
            Unit::Seconds,
            db_duration.clone(),
        );
        let db_pool = Family::default();
        registry.register(
            "khoa_db_pool_connections",
            "Connections of the database pool: open, idle, max",
            db_pool.clone(),
        );
        let db_commits = Family::default();
        registry.register(
            "khoa_db_commits",
            "Transactions of the SQLite writer's group commit, each one fsync",
            db_commits.clone(),
        );
        let db_write_jobs = Family::default();
        registry.register(
            "khoa_db_write_jobs",
            "Writes those transactions carried (÷ commits = writes per fsync)",
            db_write_jobs.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            tokens_issued,
            refresh_reuse,
            lockouts,
            rate_limited,
            shed,
            db_duration,
            db_pool,
            db_commits,
            db_write_jobs,
        }
    }

    /// One request answered (the middleware calls this).
    pub fn request(&self, route: &str, dialect: &'static str, status: u16, took: Duration) {
        let route = route.to_owned();
        self.request_duration
            .get_or_create(&RouteLabels {
                route: route.clone(),
                dialect,
            })
            .observe(took.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                route,
                dialect,
                status,
            })
            .inc();
    }

    /// A request refused by a rate limit of `dialect`'s endpoint.
    pub fn rate_limited(&self, dialect: &str) {
        self.rate_limited
            .get_or_create(&DialectLabels {
                dialect: dialect.to_owned(),
            })
            .inc();
    }

    /// Creates the zero series of `khoa_rate_limited_total` for these dialects, so that a
    /// dashboard sees 0 rather than nothing before the first refusal.
    pub fn declare_dialects<'a>(&self, dialects: impl IntoIterator<Item = &'a str>) {
        for dialect in dialects {
            let _ = self.rate_limited.get_or_create(&DialectLabels {
                dialect: dialect.to_owned(),
            });
        }
    }

    /// A lockout that is NOT recorded through the engine's auditor
    /// (`Auditor::lockout` is counted already, see [`MeteredAudit`]).
    pub fn lockout(&self) {
        self.lockouts.inc();
    }

    fn token_issued(&self, dialect: &'static str, grant: &str) {
        self.tokens_issued
            .get_or_create(&TokenLabels {
                dialect,
                grant: grant.to_owned(),
            })
            .inc();
    }

    fn db_call(&self, op: &'static str, took: Duration) {
        self.db_duration
            .get_or_create(&OpLabels { op })
            .observe(took.as_secs_f64());
    }

    /// The text exposition, after reading what is sampled rather than counted.
    pub fn render(&self, state: &AppState) -> String {
        let engine = &state.engine;
        self.shed.inner().store(
            engine.passwords().shed_total(),
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Some(pool) = engine.maintenance().pool_connections() {
            for (name, value) in [("open", pool.open), ("idle", pool.idle), ("max", pool.max)] {
                self.db_pool
                    .get_or_create(&StateLabels { state: name })
                    .set(i64::from(value));
            }
        }
        if let Some(batches) = engine.maintenance().write_batches() {
            let sqlite = BackendLabels { backend: "sqlite" };
            let counters = [
                (&self.db_commits, batches.commits),
                (&self.db_write_jobs, batches.jobs),
            ];
            for (family, total) in counters {
                let counter = family.get_or_create(&sqlite);
                counter
                    .inner()
                    .store(total, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `GET /metrics`.
pub async fn serve(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(&state);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

tokio::task_local! {
    /// The dialect whose route is being served, for metrics recorded deep inside the engine.
    static DIALECT: &'static str;
}

/// Runs `fut` (a request) with `dialect` as the current dialect.
pub async fn with_dialect<F: Future>(dialect: &'static str, fut: F) -> F::Output {
    DIALECT.scope(dialect, fut).await
}

fn current_dialect() -> &'static str {
    DIALECT.try_with(|d| *d).unwrap_or("none")
}

/// The stores with every call timed, and audit events counted on their way.
pub fn instrument(stores: Stores, metrics: &Arc<Metrics>) -> Stores {
    fn timed<S: ?Sized>(inner: Arc<S>, metrics: &Arc<Metrics>) -> Timed<S> {
        Timed {
            inner,
            metrics: metrics.clone(),
        }
    }
    Stores {
        users: Arc::new(timed(stores.users, metrics)),
        clients: Arc::new(timed(stores.clients, metrics)),
        tokens: Arc::new(timed(stores.tokens, metrics)),
        codes: Arc::new(timed(stores.codes, metrics)),
        audit: Arc::new(MeteredAudit {
            inner: stores.audit,
            metrics: metrics.clone(),
        }),
        ..stores
    }
}

/// Counts the audit events that are also metrics, then stores them.
pub struct MeteredAudit {
    inner: Arc<dyn AuditStore>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl AuditStore for MeteredAudit {
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        match event.kind {
            AuditKind::TokenIssued => {
                #[derive(serde::Deserialize)]
                struct Grant<'a> {
                    grant: &'a str,
                }
                let grant = serde_json::from_str::<Grant>(&event.detail)
                    .map(|g| g.grant)
                    .unwrap_or("unknown");
                self.metrics.token_issued(current_dialect(), grant);
            }
            AuditKind::RefreshReuse => {
                self.metrics.refresh_reuse.inc();
            }
            AuditKind::Lockout => self.metrics.lockout(),
            _ => {}
        }
        self.inner.record(event).await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.list_audit(filter).await
    }
    async fn purge_audit(&self, before: UnixTime, batch: u32) -> Result<u64, StoreError> {
        self.inner.purge_audit(before, batch).await
    }
}

/// A store whose every call is timed into `khoa_db_query_duration_seconds{op}`.
struct Timed<S: ?Sized> {
    inner: Arc<S>,
    metrics: Arc<Metrics>,
}

impl<S: ?Sized> Timed<S> {
    async fn time<T>(&self, op: &'static str, call: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = call.await;
        self.metrics.db_call(op, start.elapsed());
        out
    }
}

/// Delegates each listed method to `inner`, timed under its own name.
macro_rules! timed {
    ($trait:ident { $( fn $name:ident(&self $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )* }) => {
        #[async_trait]
        impl $trait for Timed<dyn $trait> {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
                    self.time(stringify!($name), self.inner.$name($($arg),*)).await
                }
            )*
        }
    };
}

timed!(UserStore {
    fn create_user(&self, user: &NewUser) -> User;
    fn find_user_by_username(&self, username: &str) -> Option<User>;
    fn find_user_by_id(&self, id: &str) -> Option<User>;
    fn list_users(&self) -> Vec<User>;
    fn set_password_hash(&self, username: &str, hash: &str) -> bool;
    fn set_user_disabled(&self, username: &str, disabled: bool) -> bool;
    fn delete_user(&self, username: &str) -> bool;
});

timed!(ClientStore {
    fn create_client(&self, client: &Client) -> ();
    fn find_client(&self, client_id: &str) -> Option<Client>;
    fn list_clients(&self) -> Vec<Client>;
    fn set_client_secret_hash(&self, client_id: &str, hash: &str) -> bool;
    fn delete_client(&self, client_id: &str) -> bool;
});

timed!(TokenStore {
    fn issue(&self, issuance: &Issuance) -> ();
    fn find_refresh(&self, hash: &str) -> Option<RefreshState>;
    fn rotate(&self, rotation: &Rotation) -> RotateOutcome;
    fn revoke_family(&self, family_id: &str, at: UnixTime) -> bool;
    fn find_family(&self, family_id: &str) -> Option<TokenFamily>;
    fn find_access(&self, hash: &str) -> Option<AccessState>;
    fn revoke_access(&self, hash: &str) -> bool;
    fn revoke_jwt(&self, revoked: &RevokedJwt) -> ();
    fn revoked_jwts_since(&self, since: UnixTime, now: UnixTime) -> Vec<RevokedJwt>;
    fn purge_expired(&self, now: UnixTime, batch: u32) -> u64;
});

timed!(AuthCodeStore {
    fn create_code(&self, code: &AuthCode) -> ();
    fn find_code(&self, hash: &str) -> Option<AuthCodeState>;
    fn redeem_code(&self, hash: &str, used_at: UnixTime, issuance: &Issuance) -> RedeemOutcome;
});
