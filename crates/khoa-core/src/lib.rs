//! khoa-core: the token engine. It knows principals, grants, token policy, minting, rotation
//! and scopes; it knows nothing of HTTP or SQL. Time and randomness come in through
//! [`clock::Clock`] and [`clock::Random`], storage through the traits in [`store`].
//!
//! # Layout
//!
//! - [`model`]: users, clients, grant types, per-client [`model::TokenPolicy`].
//! - [`scope`]: RFC 6749 §3.3 scope sets.
//! - [`error`]: [`error::OAuthError`] (RFC code + HTTP status) and [`error::EngineError`],
//!   whose internal failures keep their cause ([`error::chain`] prints it on one line).
//! - [`store`]: the storage contract, one trait per aggregate, bundled in [`store::Stores`].
//! - [`engine`]: [`engine::Engine`], a thin facade over four services split by purpose, each
//!   holding only the stores it uses: `engine/tokens.rs` ([`engine::Tokens`]: client
//!   authentication, grant dispatch, bearer validation, revocation, introspection),
//!   `engine/authorization.rs` ([`engine::Authorization`]: authorize checks, sign-in, codes,
//!   CSRF), `engine/admin.rs` ([`engine::Administration`]: clients, users, partners, keys,
//!   with their `admin` audit events), `engine/maintenance.rs` ([`engine::Maintenance`]:
//!   key reloads, purges, readiness).
//! - [`grant`]: one module per grant (`authorization_code`, `password`, `client_credentials`,
//!   `refresh_token`) behind [`grant::GrantHandler`]; the refresh module holds the rotation and
//!   reuse rules, the code module PKCE and the single-use rule.
//! - [`audit`]: [`audit::Auditor`], the events the engine records (logins, tokens issued,
//!   reuse, revocation, lockout, key rotation, admin actions), never with a secret.
//! - [`authorize`]: the authorization endpoint's checks (client, exact redirect URI, PKCE,
//!   which errors may be redirected) and the login form's CSRF guard.
//! - [`revocation`]: RFC 7009 revocation (the in-memory JWT revocation list every node polls)
//!   and RFC 7662 introspection results.
//! - [`mint`]: building access/refresh tokens per policy and committing them; the key ring.
//! - [`keys`]: Ed25519 signing keys, JWKS, RFC 9068 JWT access tokens.
//! - [`secret`]: token generation and hashing, client-secret HMAC, the sealed successor.
//! - [`master_key`]: the key everything at rest is sealed under.
//! - [`envelope`]: the AES-256-CBC partner envelope of seed 002.
//! - [`partner`]: partners of the encrypted dialect: sealed AES keys, rotation, opening.
//! - [`client_key`]: the keys clients sign requests with: RSA public keys, sealed HMAC secrets.
//! - [`password`]: Argon2id on a bounded blocking pool.
//! - [`client_cache`]: clients cached for a few seconds, off the hot path.
//! - [`clock`]: injectable time and randomness.
//! - `testing` (with the `testing` feature, and in this crate's tests): `MemoryStore`, the
//!   in-memory stores the engine's tests, the benches and the fuzz targets run on; not a
//!   backend, but held to the backends' contract by `khoa-store`'s conformance suite.
//! - `engine_tests.rs`: the engine's unit tests, end to end through [`engine::Engine`] on the
//!   in-memory store with a manual clock.

#![forbid(unsafe_code)]

pub mod audit;
pub mod authorize;
pub mod client_cache;
pub mod client_key;
pub mod clock;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod grant;
pub mod keys;
pub mod master_key;
pub mod mint;
pub mod model;
pub mod partner;
pub mod password;
pub mod revocation;
pub mod scope;
pub mod secret;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod engine_tests;
