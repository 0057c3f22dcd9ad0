//! The caller's side of a token API: a [`TokenSource`] gets a token from any endpoint a khoa
//! dialect definition describes — the built-in ones (`oauth2`, `derivative`, `bankhub`,
//! `partner`, `vietqr`) or an operator's file, the same format `khoa serve` reads — and keeps
//! it fresh.
//!
//! The definition says how to build the request (HTTP Basic as is or form-encoded, a JSON or
//! form body, headers, the AES envelope, a request signature) and where the answer keeps the
//! token, its lifetime (seconds, milliseconds, text, an absolute time) and the refresh token.
//! The source adds what every caller otherwise writes again, and often gets wrong:
//!
//! - proactive refresh before the token expires, scaled for short tokens, with jitter;
//! - one token call however many callers ask at once (single flight), run in its own task —
//!   per source and its clones, or per key across sources built apart
//!   ([`Builder::build_shared`]);
//! - the rotated refresh token kept before the new access token is handed out, and a fresh
//!   login when a refresh is refused;
//! - after a 401, the token that failed invalidated (by generation) and the request sent once
//!   more ([`TokenSource::send`]);
//! - back-off with jitter after failures, honouring `Retry-After`, never stopping for good;
//! - an on-change callback, and a persistent store ([`FileStore`]: 0600, with a cross-process
//!   lock, so the processes of a host share one token and one rotation chain);
//! - `reqwest-middleware` integration (feature `middleware`), and [`Stats`] for metrics;
//! - secrets redacted in every `Debug`.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> Result<(), khoa_client::Error> {
//! use khoa_client::{Credentials, TokenSource};
//!
//! let source = TokenSource::built_in("oauth2")?
//!     .base_url("https://id.example")
//!     .credentials(Credentials::client("reporting", "its-secret").with_scope("read"))
//!     .build()?;
//! let token = source.token().await?;
//! println!("{}", token.generation());
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - `source.rs` — [`TokenSource`], its builder and [`RefreshPolicy`]: the cache, the single
//!   flight, the refresh timing, rotation, invalidation and back-off.
//! - `call.rs` — one token call from a definition: the request built, the answer read back.
//! - `send.rs` — [`TokenSource::send`]: a protected API called with the token, one retry on 401.
//! - `middleware.rs` — `TokenMiddleware` (feature `middleware`): the same as a
//!   `reqwest-middleware` layer.
//! - `store.rs` — [`TokenStore`] and [`FileStore`].
//! - `credentials.rs` — [`Credentials`].
//! - `clock.rs` — [`Clock`]: the system's, or a [`ManualClock`] tests move.
//! - `error.rs` — [`Error`].
//! - `agent/` (feature `agent`) — `khoa agent`, the local credential-injecting proxy: its
//!   configuration, the forwarding handler, its metrics.

#![forbid(unsafe_code)]

#[cfg(feature = "agent")]
pub mod agent;
mod call;
mod clock;
mod credentials;
mod error;
#[cfg(feature = "middleware")]
mod middleware;
mod send;
mod source;
mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use credentials::{Credentials, read_secret};
pub use error::Error;
#[cfg(feature = "middleware")]
pub use middleware::TokenMiddleware;
pub use send::SendError;
pub use source::{
    AccessToken, Builder, RefreshPolicy, Stats, TokenSource, load_built_in, load_file,
};
pub use store::{FileStore, Saved, TokenStore};

/// The HTTP client a source gets when it is given none. With the `tls` feature reqwest speaks
/// TLS through rustls without a crypto provider of its own, and would panic without one: ring
/// is installed first.
pub(crate) fn default_http_client() -> reqwest::Client {
    #[cfg(feature = "tls")]
    install_crypto_provider();
    reqwest::Client::new()
}

/// Installs ring as rustls' process-wide crypto provider, which reqwest's rustls (built
/// without a provider of its own, feature `tls`) needs before any `reqwest::Client` is built —
/// in a program that builds its own clients, call this first. Idempotent: a provider already
/// installed, by this or by anyone, is kept.
#[cfg(feature = "tls")]
pub fn install_crypto_provider() {
    #[allow(
        deprecated,
        reason = "rustls 0.23.48 deprecates its ring provider for want of a post-quantum key \
                  exchange (aws-lc-rs only); ring stays the one backend (Cargo.toml) until it \
                  has one"
    )]
    let _ = rustls::crypto::ring::default_provider().install_default();
}
