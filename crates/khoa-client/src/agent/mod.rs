//! `khoa agent`: a local credential-injecting proxy, so that a service in any language gets
//! what a [`crate::TokenSource`] does without a library. `http://LISTEN/NAME/<path>` is
//! forwarded to upstream `NAME`'s `<base_url>/<path>` with a fresh token in `Authorization`
//! (and seed 000's `x-otp-token` on mutating requests); a 401 costs one new token and one
//! retry; a token endpoint that is down is answered at once with a JSON 503 naming the
//! upstream, and the source recovers by itself after its back-off.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> Result<(), khoa_client::agent::AgentError> {
//! use khoa_client::agent::{Agent, AgentConfig};
//!
//! khoa_client::install_crypto_provider();
//! let config = AgentConfig::load(std::path::Path::new("/etc/khoa/agent.toml"))?;
//! let agent = Agent::build(config).await?;
//! println!("listening on {}", agent.local_addr());
//! agent.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - `config.rs` — [`AgentConfig`]: the file read, validated and resolved into upstreams
//!   (token source, secrets, HTTP clients), or a [`ConfigError`] naming the file and the key.
//! - `proxy.rs` — the router: the forwarding handler, `/_khoa/healthz`, `/_khoa/metrics`,
//!   and the agent's JSON refusals.
//! - `metrics.rs` — the Prometheus counters, and the token sources' stats read at a scrape.

mod config;
mod metrics;
mod proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use config::{AgentConfig, ConfigError, DEFAULT_LISTEN, RESERVED, Upstream};
pub use proxy::MAX_BODY;

/// How long the requests in flight get after SIGINT or SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Why the agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// A bound agent: [`Agent::local_addr`] says where, [`Agent::run`] serves.
pub struct Agent {
    listener: tokio::net::TcpListener,
    shared: Arc<proxy::Shared>,
}

impl Agent {
    /// Binds `config.listen` (port 0 picks a free one).
    pub async fn build(config: AgentConfig) -> Result<Agent, AgentError> {
        let addr = config.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AgentError::Bind { addr, source })?;
        let sources = config
            .upstreams
            .values()
            .map(|u| (u.name.clone(), u.source.clone()))
            .collect();
        Ok(Agent {
            listener,
            shared: Arc::new(proxy::Shared {
                upstreams: config.upstreams,
                metrics: metrics::Metrics::new(sources),
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then gives the requests in flight
    /// [`SHUTDOWN_GRACE`] to finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AgentError> {
        let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = stopping.send(());
        };
        let serve = axum::serve(self.listener, proxy::router(self.shared))
            .with_graceful_shutdown(signal)
            .into_future();
        // A response streamed without end would otherwise hold the process up for ever.
        let deadline = async {
            if stopped.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            served = serve => served.map_err(AgentError::Serve),
            () = deadline => {
                tracing::warn!(target: "khoa::agent", "requests still in flight after the grace period; stopping");
                Ok(())
            }
        }
    }
}

/// `khoa agent --config FILE`: loads the file, binds, announces the address on standard
/// output (`khoa agent listening on http://ADDR`) and serves until `shutdown`.
pub async fn run(
    config_file: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    crate::install_crypto_provider();
    let config = AgentConfig::load(config_file)?;
    let names: Vec<String> = config.upstreams.keys().cloned().collect();
    let agent = Agent::build(config).await?;
    let addr = agent.local_addr();
    tracing::info!(target: "khoa::agent", %addr, upstreams = %names.join(","), "khoa agent listening");
    println!("khoa agent listening on http://{addr}");
    agent.run(shutdown).await?;
    tracing::info!(target: "khoa::agent", "khoa agent stopped");
    Ok(())
}
