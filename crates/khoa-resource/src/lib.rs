//! Resource-server middleware for khoa: accept or refuse the bearer tokens khoa issues, in
//! your own axum (or any tower) service, without calling khoa on every request.
//!
//! - **JWT access tokens** (RFC 9068) are verified offline: `EdDSA` only, `typ: at+jwt` only
//!   (khoa's `rt+jwt` refresh tokens are refused), `iss`, `aud`, `exp`/`nbf`/`iat` with a small
//!   leeway. Keys come from khoa's JWKS, cached for its `Cache-Control: max-age`. A token
//!   signed by a key the cache does not hold — khoa rotated — triggers a refetch, so rotation is
//!   seen without a restart; refetches are single-flight and at most one per interval (10 s by
//!   default), so forged `kid`s cannot turn this layer into a load generator against khoa.
//! - **Opaque tokens** (anything that is not three dot-separated parts) are checked by RFC 7662
//!   introspection at `{issuer}/connect/introspect`, authenticated as a confidential client;
//!   positive answers are reused for at most 30 s and never past the token's `exp`.
//! - **Revoked JWTs** (RFC 7009 at khoa) are refused too when an introspection client is
//!   configured: the layer keeps khoa's JWT revocation list (`{issuer}/connect/revoked-jwts`,
//!   readable by confidential clients) in memory and polls it for additions when it is older
//!   than the poll interval (5 s by default) — on the request path, single-flight, from a
//!   minute before the previous answer to tolerate clock skew. A revoked JWT is refused
//!   within about one interval. While khoa cannot be polled the last list is used, but once it
//!   is older than the staleness bound (10 × the interval, at least 60 s, by default) every
//!   JWT is answered 503: past that bound a revoked token could pass, so the layer fails
//!   closed rather than guess.
//! - Refusals follow RFC 6750 §3: 401 with `WWW-Authenticate: Bearer error="invalid_token"`,
//!   403 `insufficient_scope` naming the missing scopes, 503 when khoa cannot be reached
//!   (a good token must not be told it is bad). Tokens and secrets are never logged.
//!
//! Without an introspection client (or with [`KhoaAuthBuilder::revocation_list`]`(false)`)
//! nothing is polled, and offline verification has its usual trade-off: a JWT revoked at khoa
//! stays valid here until its `exp`, since nothing in the token or the JWKS says so. Keep JWT
//! lifetimes short then, or give clients whose tokens must die at once opaque tokens.
//! Also note that the list names revoked JWTs by `jti` only: a JWT whose *session* ended at
//! khoa (its refresh-token family revoked) is refused by khoa itself but not by this layer,
//! which has no view of sessions; it passes here until its `exp`.
//!
//! # Layout
//!
//! - [`auth`](KhoaAuth): [`KhoaAuth`], the shared validator, and its [`KhoaAuthBuilder`];
//!   the `Authorization: Bearer` header parsing.
//! - `jwt`: the compact JWS taken apart, header checks before any key lookup, signature and
//!   claim checks after.
//! - `jwks`: the key cache — freshness, refetch on an unknown `kid`, single flight, rate limit,
//!   stale-if-error.
//! - `introspect`: RFC 7662 requests and the short positive cache.
//! - `revocation`: khoa's JWT revocation list — polling (single flight, overlap, backoff while
//!   khoa is down), expiry of entries, the staleness bound past which JWTs get 503.
//! - [`fetch`]: the [`Fetcher`] trait and [`HyperFetcher`] (plain HTTP; where TLS plugs in).
//! - [`layer`](KhoaAuthLayer): [`KhoaAuthLayer`] and [`RequireScopes`], the tower middleware.
//! - [`extract`](KhoaClaims): the [`KhoaClaims`] axum extractor.
//! - [`claims`](Claims): [`Claims`], [`Scopes`]; [`error`](AuthError): [`AuthError`] and its
//!   RFC 6750 responses; [`stats`](Stats): counters for metrics.
//!
//! # Examples
//!
//! ```no_run
//! use axum::Router;
//! use axum::routing::{get, post};
//! use khoa_resource::{KhoaAuth, KhoaClaims, RequireScopes};
//! use secrecy::SecretString;
//!
//! async fn me(KhoaClaims(claims): KhoaClaims) -> String {
//!     format!("{} via {} ({})", claims.sub, claims.client_id, claims.scope)
//! }
//!
//! async fn place_order(claims: KhoaClaims) -> &'static str {
//!     "placed"
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = KhoaAuth::builder("http://127.0.0.1:8080", "khoa")
//!     // Needed for opaque tokens, and for refusing JWTs revoked at khoa.
//!     .introspection_client(
//!         "orders-api",
//!         SecretString::from(std::env::var("ORDERS_API_SECRET")?),
//!     )
//!     .build()?;
//! // Optional: fail at start-up if khoa is unreachable.
//! auth.prefetch_jwks().await?;
//! auth.prefetch_revocation_list().await?;
//!
//! let app = Router::new()
//!     .route("/me", get(me))
//!     .route(
//!         "/orders",
//!         post(place_order).route_layer(RequireScopes::new(["orders:write"])),
//!     )
//!     .layer(auth.layer());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod auth;
mod claims;
mod error;
mod extract;
pub mod fetch;
mod introspect;
mod jwks;
mod jwt;
mod layer;
mod revocation;
mod stats;

pub use auth::{ConfigError, KhoaAuth, KhoaAuthBuilder};
pub use claims::{Claims, Scopes, TokenSource};
pub use error::AuthError;
pub use extract::KhoaClaims;
pub use fetch::{FetchError, Fetcher, HyperFetcher};
pub use layer::{KhoaAuthLayer, KhoaAuthService, RequireScopes, RequireScopesService};
pub use stats::Stats;
