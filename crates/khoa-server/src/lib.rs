//! khoa-server: the HTTP edge of khoa and the `khoa` binary.
//!
//! # Layout
//!
//! - [`config`]: the typed configuration (defaults → TOML → `KHOA_*`), validated at start-up:
//!   [`config::Config`], its loading and its top-level keys in `config/mod.rs`; one file per
//!   section, each with its struct and its `validate()` (`http` with `tls` and `listen`,
//!   `database`, `keys`, `password` with `lockout`, `limits`, `metrics`, `audit`, `authorize`,
//!   `dialects`, `forward_auth`); `known_keys`, which refuses an unknown key naming the nearest.
//! - [`startup`]: [`startup::App::build`] (bind, open database, build engine) and
//!   [`startup::App::run`] (serve with graceful shutdown); the router; background maintenance.
//! - [`tls`]: native TLS (rustls on ring): the certificate and key files, reloaded on SIGHUP.
//! - [`connections`]: the per-address connection cap, and which idle connection to close when
//!   the accept loop runs out of slots.
//! - [`dialects`]: every wire dialect is a definition ([`dialects::registry`]: the five
//!   built-in ones embedded from `crates/khoa-dialect/dialects/*.toml`, and the files of
//!   `dialects.dir`), served by one generic adapter ([`dialects::generic`]: parse → engine →
//!   render); what a definition can name that needs code is in [`dialects::operations`]
//!   (revocation, introspection, the JWT revocation list, a protected resource) and
//!   [`dialects::signature`].
//! - [`dialect_cli`]: `khoa dialect list | show | check | schema`.
//! - [`token_cli`]: `khoa token get`, a token from any dialect's endpoint for a human
//!   (through `khoa-client`).
//! - [`authorize`]: `/connect/authorize` (RFC 6749 §4.1 with PKCE): the server-rendered,
//!   bilingual login page, its CSRF cookie, and the redirect back with the code.
//! - [`userinfo`]: OpenID Connect `/connect/userinfo`.
//! - [`resource`]: the bearer-token extractor (RFC 6750) and the sample protected resource.
//! - [`forward_auth`]: `/auth/verify` for nginx `auth_request`, Traefik `forwardAuth`, Envoy
//!   `ext_authz`: the bearer check plus per-route scope and OTP rules from config.
//! - [`wellknown`]: the published JWKS document.
//! - [`limits`]: the rate-limit buckets (per client, partner, source IP) and the client's IP.
//! - [`health`]: `/healthz` and `/readyz`.
//! - [`protocol`]: the middleware that answers refusals of the HTTP layer (405, 408, 413, 431)
//!   in the shape of the dialect that owns the path, and refuses an oversized declared body or
//!   head before the body is read.
//! - [`openapi`]: the OpenAPI 3.1 document of every public endpoint, at `/openapi.json`;
//!   [`openapi_defined`] generates every dialect's operations from its definition.
//! - [`telemetry`]: the request middleware: request id (`X-Request-Id`), one log line per
//!   request, HTTP metrics.
//! - [`metrics`]: `GET /metrics` (Prometheus text format): the registry, store timing, the
//!   counters fed by audit events.
//! - [`wire`]: strict parsers for form bodies and `Authorization` headers.
//! - [`state`]: [`state::AppState`], what every handler can reach (the engine, the
//!   configuration, the rate limits, the metrics).
//! - [`error`]: [`error::ApiError`]: a refusal in its OAuth shape, or a 500/503 with a
//!   correlation id and its cause's chain on the log line.
//! - [`master_key`]: loading or creating the master key.
//! - [`cli`], [`admin`], [`demo`]: the command line, its admin verbs, and `khoa demo`.
//! - [`backup`]: `khoa backup --to FILE`, the online copy of the SQLite database.
//! - `router_tests`: the router tier, every dialect's refusal shapes through `oneshot`.

#![forbid(unsafe_code)]

pub mod admin;
pub mod authorize;
pub mod backup;
pub mod cli;
pub mod config;
pub mod connections;
pub mod demo;
pub mod dialect_cli;
pub mod dialects;
pub mod error;
pub mod forward_auth;
pub mod health;
pub mod limits;
pub mod master_key;
pub mod metrics;
pub mod openapi;
pub mod openapi_defined;
pub mod protocol;
pub mod resource;
#[cfg(test)]
mod router_tests;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod token_cli;
pub mod userinfo;
pub mod wellknown;
pub mod wire;
