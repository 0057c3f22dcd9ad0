//! The start-up seam: [`App::build`] opens the database, builds the engine and binds the port;
//! [`App::run`] serves until the shutdown future resolves, then drains gracefully.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::routing::get;
use hyper::body::Incoming;
use khoa_core::clock::{AdvancedClock, Clock, OsRandom, Random, SystemClock};
use khoa_core::engine::{Engine, EngineConfig};
use khoa_core::error::chain;
use khoa_core::store::Stores;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

use crate::config::Config;
use crate::connections::{Connections, Tracker};
use crate::dialects;
use crate::metrics::{self, Metrics};
use crate::state::AppState;
use crate::telemetry::{self, Telemetry};
use crate::tls::TlsCerts;
use crate::{authorize, forward_auth, health, openapi, resource, userinfo, wellknown};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    MasterKey(#[from] crate::master_key::MasterKeyLoadError),
    /// The cause follows on the same line (`{:#}`), from [`std::error::Error::source`].
    #[error("database {url}")]
    Database {
        url: String,
        source: khoa_core::store::StoreError,
    },
    #[error("engine: {0}")]
    Engine(#[from] khoa_core::error::EngineError),
    #[error(
        "database {} does not exist: create it with `khoa migrate` (or by starting `khoa serve` \
         once), or point --config or KHOA_DATABASE_URL at the existing one",
        .path.display()
    )]
    NoDatabase { path: PathBuf },
    #[error(
        "database {}: its directory {} does not exist; create it first (khoa creates the \
         database file, never directories, so that a mistyped path is not taken for a new, \
         empty database)",
        .path.display(),
        .dir.display()
    )]
    NoDatabaseDir { path: PathBuf, dir: PathBuf },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Dialect(#[from] dialects::registry::RegistryError),
    #[error("danger_clock_file {}: {reason}", .path.display())]
    DangerClock { path: PathBuf, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The database URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// What opening a SQLite database may do when its file does not exist yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMissing {
    /// `serve` and `migrate`: create it, and its master key file, in its directory, which must
    /// exist already.
    Create,
    /// The admin verbs and `backup`: refuse. Run in the wrong directory or with the wrong
    /// `--config`, a verb would otherwise work on a fresh, empty database (and a fresh master
    /// key beside it), which looks like data loss.
    Refuse,
}

/// Checks that the configured SQLite database exists, or may be created (see [`OnMissing`]).
/// `Ok(true)` when it does not exist yet and opening it will create it; callers say so.
pub fn check_database(config: &Config, on_missing: OnMissing) -> Result<bool, StartError> {
    let Some(path) = config.sqlite_path() else {
        // PostgreSQL: the database must exist anyway, and connecting says so when it does not.
        return Ok(false);
    };
    if path.exists() {
        return Ok(false);
    }
    match on_missing {
        OnMissing::Refuse => Err(StartError::NoDatabase { path }),
        OnMissing::Create => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf();
            if dir.is_dir() {
                Ok(true)
            } else {
                Err(StartError::NoDatabaseDir { path, dir })
            }
        }
    }
}

/// Opens the configured database, which must exist, and builds the engine over it: for the
/// CLI verbs.
pub async fn open_engine(config: &Config, issuer: String) -> Result<Arc<Engine>, StartError> {
    check_database(config, OnMissing::Refuse)?;
    let seam = Seam::from_config(config)?;
    open_engine_with(config, issuer, OnMissing::Refuse, &seam, |stores| stores).await
}

/// What the server takes from the world besides its configuration: the clock and the source
/// of randomness. `App::build` uses the system's; a test passes a clock it advances instead of
/// waiting for tokens to expire or locks to pass (STYLE 11).
#[derive(Clone)]
pub struct Seam {
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
}

impl Default for Seam {
    fn default() -> Self {
        Seam {
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
        }
    }
}

impl Seam {
    /// The system's clock and randomness, unless `danger_clock_file` moves the clock: then
    /// an [`AdvancedClock`] at the file's offset, which a task re-reads every 50 ms for as long
    /// as the process runs (a test moves the time of a `khoa serve` child by rewriting it).
    pub fn from_config(config: &Config) -> Result<Seam, StartError> {
        let Some(path) = &config.danger_clock_file else {
            return Ok(Seam::default());
        };
        let refused = |reason: String| StartError::DangerClock {
            path: path.clone(),
            reason,
        };
        let clock = Arc::new(AdvancedClock::new());
        clock.set_offset(read_clock_offset(path).map_err(refused)?);
        tracing::warn!(path = %path.display(), "danger_clock_file: the clock is moved by a file");
        let (watched, file) = (clock.clone(), path.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                // A file caught mid-write is read again on the next tick.
                if let Ok(offset) = read_clock_offset(&file) {
                    watched.set_offset(offset);
                }
            }
        });
        Ok(Seam {
            clock,
            random: Arc::new(OsRandom),
        })
    }
}

/// The offset in `path`: an integer of seconds, 0 when there is no file.
fn read_clock_offset(path: &Path) -> Result<i64, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("holds {:?}, not an integer of seconds", text.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.to_string()),
    }
}

/// [`open_engine`] with the stores wrapped by `wrap` (the server's metrics) before the engine
/// sees them.
async fn open_engine_with(
    config: &Config,
    issuer: String,
    on_missing: OnMissing,
    seam: &Seam,
    wrap: impl FnOnce(Stores) -> Stores,
) -> Result<Arc<Engine>, StartError> {
    let master = crate::master_key::load(config, on_missing)?;
    let stores = wrap(open_stores(config).await?);
    let engine = Engine::new(
        EngineConfig {
            issuer,
            audience: config.audience.clone(),
            password: config.password_params(),
            password_concurrency: config.password_concurrency(),
            password_queue: config.password_queue(),
            client_cache_secs: config.client_cache_secs,
            auth_code_ttl: config.authorize.code_ttl_secs,
            lockout: config.lockout_policy(),
            node: config.node.clone(),
            // Named in the admin audit events of the CLI verbs and the demo's seeding.
            operator: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .ok(),
        },
        stores,
        master,
        seam.clock.clone(),
        seam.random.clone(),
    )
    .await?;
    Ok(Arc::new(engine))
}

async fn open_stores(config: &Config) -> Result<Stores, StartError> {
    let opts = khoa_store::StoreOptions {
        max_connections: config.database.max_connections,
        busy_timeout: Duration::from_millis(config.database.busy_timeout_ms),
        batch_max: config.database.batch_max,
    };
    khoa_store::connect(&config.database_url, &opts)
        .await
        .map_err(|source| StartError::Database {
            url: redact_url(&config.database_url),
            source,
        })
}

pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    config: Config,
    tls: Option<Arc<TlsCerts>>,
}

impl App {
    /// Binds `config.listen` (port 0 picks a free port) and opens everything the server needs,
    /// on the system clock and randomness.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let seam = Seam::from_config(&config)?;
        Self::build_with(config, seam).await
    }

    /// [`App::build`] with the clock and randomness given.
    pub async fn build_with(config: Config, seam: Seam) -> Result<App, StartError> {
        // First: a TLS mistake is refused before a database is created for nothing.
        let tls = match (&config.tls.cert_file, &config.tls.key_file) {
            (Some(cert), Some(key)) => Some(TlsCerts::load(cert, key)?),
            _ => None,
        };
        // So is a definition file that does not validate.
        let defined_dialects = Arc::new(load_defined_dialects(&config)?);
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let issuer = config
            .issuer
            .clone()
            .map(|i| i.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("{scheme}://{addr}"));
        if check_database(&config, OnMissing::Create)? {
            tracing::info!(
                path = %config.sqlite_path().unwrap_or_default().display(),
                "creating a new database"
            );
        }
        let metrics = Arc::new(Metrics::new());
        let engine = open_engine_with(&config, issuer, OnMissing::Create, &seam, |s| {
            metrics::instrument(s, &metrics)
        })
        .await?;
        Ok(App {
            listener,
            addr,
            state: AppState {
                engine,
                limits: Arc::new(crate::limits::RateLimits::new(&config.rate_limit)),
                config: Arc::new(config.clone()),
                metrics,
                defined_dialects,
            },
            config,
            tls,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The certificates served when TLS is on; [`TlsCerts::reload`] is what SIGHUP does.
    pub fn tls(&self) -> Option<Arc<TlsCerts>> {
        self.tls.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
    /// (for at most `http.shutdown_grace_secs`) and returns.
    ///
    /// The accept loop is written out (hyper's HTTP/1.1 connection builder, not `axum::serve`)
    /// for limits `axum::serve` cannot set: the number of connections served at once and per
    /// client address, the size of a request head, the time a client may take to send it
    /// (slow-loris) or to finish its TLS handshake; and to close an idle connection when the
    /// slots run out.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let maintenance = tokio::spawn(maintenance(self.state.clone(), self.config.clone()));
        let engine = self.state.engine.clone();
        let router = router(self.state, &self.config);
        let http = &self.config.http;
        let (acceptor, reloader) = match &self.tls {
            Some(certs) => {
                let config = certs.server_config().map_err(std::io::Error::other)?;
                #[cfg(unix)]
                let reloader = Some(certs.clone().reload_on_sighup()?);
                #[cfg(not(unix))]
                let reloader = None;
                (Some(tokio_rustls::TlsAcceptor::from(config)), reloader)
            }
            None => (None, None),
        };
        tracing::info!(addr = %self.addr, tls = acceptor.is_some(), "khoa listening");
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(http.header_read_timeout_secs))
            // Above the limit, so that a head over `http.max_header_bytes` reaches the router and is
            // refused in its dialect's shape (`protocol`); hyper's bare 431 stays the backstop.
            .max_buf_size(crate::protocol::hyper_head_cap(http.max_header_bytes));
        let serving = Arc::new(Serving {
            builder,
            router,
            acceptor,
            handshake_timeout: Duration::from_secs(http.header_read_timeout_secs),
        });
        // A permit per connection served. Taken after `accept` and the per-address check, so
        // that an address over its cap never holds one; while none is free the loop accepts
        // nothing more, and newcomers wait in the kernel's backlog instead of costing this
        // process memory and file descriptors.
        let permits = Arc::new(tokio::sync::Semaphore::new(http.max_connections));
        let tracked = Connections::new(http.max_connections_per_ip());
        let (drain, draining) = tokio::sync::watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        'accept: loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let Some(tracker) = tracked.admit(peer.ip()) else {
                // Closed at once: one client must not crowd out the others.
                tracing::debug!(%peer, "closed: its address holds http.max_connections_per_ip");
                drop(stream);
                continue;
            };
            let permit = loop {
                if let Ok(permit) = permits.clone().try_acquire_owned() {
                    break permit;
                }
                // Every slot is taken: close the connection idle longest for this newcomer, or,
                // with none idle, wait for a slot or for a connection to turn idle.
                let asked = tracked.close_longest_idle(&tracker);
                tracked.set_starved(!asked);
                tokio::select! {
                    p = permits.clone().acquire_owned() => {
                        break p.expect("the semaphore is never closed");
                    }
                    _ = tracked.turned_idle(), if !asked => {}
                    _ = &mut shutdown => break 'accept,
                }
            };
            tracked.set_starved(false);
            let _ = stream.set_nodelay(true);
            let serving = serving.clone();
            let draining = draining.clone();
            connections.spawn(async move {
                serving.connection(stream, peer, &tracker, draining).await;
                // The socket is closed by now; only then is the slot given back.
                drop(tracker);
                drop(permit);
            });
            while connections.try_join_next().is_some() {}
        }
        drop(self.listener);
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        let _ = drain.send(true);
        let grace = Duration::from_secs(http.shutdown_grace_secs);
        let drained = tokio::time::timeout(grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = connections.len(),
                "connections still open after the shutdown grace period; closing them"
            );
            connections.shutdown().await;
        }
        maintenance.abort();
        // Audit events are queued behind the answers they describe: commit the last ones.
        engine.maintenance().flush_audit().await;
        tracing::info!("khoa stopped");
        Ok(())
    }
}

/// What every connection is served with.
struct Serving {
    builder: hyper::server::conn::http1::Builder,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// For the TLS handshake: `http.header_read_timeout_secs`, the same slow-loris bound as
    /// the request head that follows it.
    handshake_timeout: Duration,
}

impl Serving {
    /// Serves one accepted connection to its end: the TLS handshake first when TLS is on, in
    /// the connection's own task, so that a slow handshake never holds up the accept loop.
    async fn connection(
        &self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        tracker: &Tracker,
        mut draining: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(acceptor) = &self.acceptor else {
            return self.http(stream, peer, tracker, draining).await;
        };
        let handshake = tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream));
        let tls = tokio::select! {
            tls = handshake => tls,
            // A handshake in progress is no request in flight: it yields its slot like an idle
            // connection, and to shutdown at once.
            _ = tracker.close_requested() => return,
            _ = draining.changed() => return,
        };
        match tls {
            Ok(Ok(tls)) => self.http(tls, peer, tracker, draining).await,
            // Plain HTTP sent to the TLS port ends here too, with a TLS alert.
            Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    async fn http<I>(
        &self,
        io: I,
        peer: SocketAddr,
        tracker: &Tracker,
        mut draining: tokio::sync::watch::Receiver<bool>,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let requests = tracker.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            // The peer reaches handlers as `ConnectInfo`: the per-IP rate limit keys on it.
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let busy = requests.busy();
            let answer = tower::ServiceExt::oneshot(router.clone(), req);
            async move {
                let answer = answer.await;
                drop(busy);
                answer
            }
        });
        let conn = self
            .builder
            .serve_connection(hyper_util::rt::TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            _ = draining.changed() => {}
            _ = tracker.close_requested() => {}
        }
        // Shutdown, or a newcomer needs the slot: finish the request in progress, answer it
        // with `Connection: close`, and close an idle connection at once.
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}

/// The dialects served from definitions (the enabled built-in ones, the files of
/// `dialects.dir`), checked against every path khoa's other routes serve.
pub fn load_defined_dialects(
    config: &Config,
) -> Result<Vec<Arc<khoa_dialect::Dialect>>, dialects::registry::RegistryError> {
    dialects::registry::load(&config.dialects, &reserved_paths(config))
}

/// The paths of khoa's routes that are not definitions, each with what serves it.
pub fn reserved_paths(config: &Config) -> Vec<(String, String)> {
    let mut taken: Vec<(String, String)> = Vec::new();
    taken.extend(
        dialects::registry::KHOA_PATHS
            .iter()
            .map(|p| (p.to_string(), "khoa".to_owned())),
    );
    taken.push((
        config.metrics.path.clone(),
        "khoa (metrics.path)".to_owned(),
    ));
    if config.forward_auth.enabled {
        taken.push((
            config.forward_auth.path.clone(),
            "khoa (forward_auth.path)".to_owned(),
        ));
    }
    taken
}

pub fn router(state: AppState, config: &Config) -> Router {
    let route_dialects = dialects::route_dialects(&state.defined_dialects);
    state
        .metrics
        .declare_dialects(route_dialects.iter().map(|r| r.dialect));
    let telemetry = Telemetry {
        metrics: state.metrics.clone(),
        dialects: Arc::new(
            route_dialects
                .iter()
                .map(|r| (r.path.clone(), r.dialect))
                .collect(),
        ),
    };
    let protocol = crate::protocol::Protocol {
        renderers: Arc::new(
            route_dialects
                .into_iter()
                .map(|r| (r.path, r.refuse))
                .collect(),
        ),
        max_body_bytes: config.http.max_body_bytes,
        max_header_bytes: config.http.max_header_bytes,
    };
    let files = state.defined_dialects.clone();
    let mut router = Router::new();
    if config.metrics.enabled {
        router = router.route(&config.metrics.path, get(metrics::serve));
    }
    router
        .merge(dialects::routes(&files))
        .merge(forward_auth::routes(&config.forward_auth))
        .route(
            resource::PROTECTED_RESOURCE_PATH,
            get(resource::protected_resource)
                .post(resource::protected_resource)
                .put(resource::protected_resource)
                .patch(resource::protected_resource)
                .delete(resource::protected_resource),
        )
        .route(
            authorize::AUTHORIZE_PATH,
            get(authorize::show).post(authorize::submit),
        )
        .route(
            userinfo::USERINFO_PATH,
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .route(wellknown::JWKS_PATH, get(wellknown::jwks))
        .route(
            wellknown::OAUTH_METADATA_PATH,
            get(wellknown::oauth_metadata),
        )
        .route(
            wellknown::OPENID_CONFIGURATION_PATH,
            get(wellknown::openid_configuration),
        )
        .route(health::HEALTHZ_PATH, get(health::healthz))
        .route(health::READYZ_PATH, get(health::readyz))
        .route(openapi::OPENAPI_PATH, get(openapi::openapi_json))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(config.http.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.http.request_timeout_secs),
        ))
        // Outside the timeout, to render its 408 in the route's dialect; it refuses an
        // oversized declared body or head before any body is read.
        .layer(axum::middleware::from_fn_with_state(
            protocol,
            crate::protocol::shape,
        ))
        // Outermost: it sees timeouts and body-limit refusals too.
        .layer(axum::middleware::from_fn_with_state(
            telemetry,
            telemetry::observe,
        ))
        .with_state(state)
}

async fn not_found() -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": "not_found" })),
    )
}

/// How long a retired signing key is kept (unpublished, refusing its tokens) before it is
/// deleted: long enough for `khoa keys list` to show what happened.
const RETIRED_KEY_RETENTION_SECS: i64 = 24 * 3600;

/// Periodic work every node does: pick up signing keys scheduled elsewhere (the ring then
/// switches and retires on time by itself), delete expired tokens in small batches, audit
/// events past `audit.retention_days`, and long-retired keys.
async fn maintenance(state: AppState, config: Config) {
    let mut keys = tokio::time::interval(Duration::from_secs(config.keys.reload_secs));
    let mut purge = tokio::time::interval(Duration::from_secs(config.purge_interval_secs));
    let work = state.engine.maintenance();
    loop {
        tokio::select! {
            _ = keys.tick() => {
                if let Err(e) = work.reload_keys(state.engine.now()).await {
                    tracing::warn!(error = %chain(&e), "reloading signing keys failed");
                }
            }
            _ = purge.tick() => {
                let now = state.engine.now();
                match work.purge_expired_tokens(now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "purged expired tokens"),
                    Err(e) => tracing::warn!(error = %chain(&e), "purging expired tokens failed"),
                }
                // A failure older than the longest lock no longer counts (LockoutPolicy), so
                // its row only takes room; unknown usernames make such rows plentiful.
                let forget_before = now - config.lockout.max_secs.max(0);
                match work.purge_login_failures(forget_before, now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(deleted = n, "purged old failed sign-ins"),
                    Err(e) => tracing::warn!(error = %chain(&e), "purging old failed sign-ins failed"),
                }
                state.limits.retain_recent();
                if config.audit.retention_days > 0 {
                    let before = now - i64::from(config.audit.retention_days) * 86_400;
                    match work.purge_audit(before).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "purged audit events past the retention"),
                        Err(e) => tracing::warn!(error = %chain(&e), "purging old audit events failed"),
                    }
                }
                let retired_before = now - RETIRED_KEY_RETENTION_SECS;
                match work.delete_retired_keys(retired_before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "deleted long-retired signing keys"),
                    Err(e) => tracing::warn!(error = %chain(&e), "deleting retired signing keys failed"),
                }
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn database_passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://khoa:s3cret@db:5432/khoa"),
            "postgres://khoa:***@db:5432/khoa"
        );
        assert_eq!(redact_url("sqlite://khoa.db"), "sqlite://khoa.db");
        assert_eq!(
            redact_url("postgres://khoa@db/khoa"),
            "postgres://khoa@db/khoa"
        );
    }
}
