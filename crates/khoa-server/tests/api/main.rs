//! The HTTP integration tests: one binary, the real server on port 0 per test (STYLE 14).
//!
//! - `abuse_lockout`: the lock after repeated failed sign-ins, per dialect, and its CLI;
//!   `abuse_rate_limit`: 429 per IP, client and partner in every dialect's shape;
//!   `abuse_http`: head size, header-read timeout, connection caps (global, per address, idle
//!   connections closed for newcomers), graceful shutdown;
//!   `abuse_shed`: 503 + `Retry-After` beyond the Argon2 pool and queue, per dialect;
//!   `abuse_protocol`: repeated credential headers, 405/408/413/400 in each dialect's shape,
//!   readiness on a full disk (a file-size limit on a real `khoa serve`).
//! - `agent`: `khoa agent` (the real binary) in front of the real server: forwarding, the
//!   OTP header, one retry after a 401, HTTPS with a `ca_file`, the token endpoint down and
//!   back, metrics, every configuration refusal, the shipped example, no secret at trace.
//! - `helpers`: `spawn_app()`, typed request, seeding and assertion helpers.
//! - `audit`: the audit events each flow records, and `khoa audit list`.
//! - `cli`: running the `khoa` binary with a clean environment and capturing its output.
//! - `authorization_code`: the code flow with PKCE, the login page, ID tokens and userinfo;
//!   `authcode_browser` drives the same flow in headless Chromium (`tests/python/`).
//! - `seed004`: seed 004's own sample request and the answer it documents.
//! - `scopes`, `errors`, `client_credentials`, `rotation`, `expiry`: the token endpoint and the
//!   protected resource, one area each.
//! - `restart`, `at_rest`: what survives a restart, and what never reaches the disk.
//! - `example_config`: `khoa.example.toml` loads and lists every key with its default;
//!   `deploy`: `deploy/khoa.service` passes `systemd-analyze verify` and `security`, and
//!   `deploy/khoa.toml` loads.
//! - `backup`: `khoa backup` of a live `khoa serve` under refresh load, and a new server on
//!   the copy accepting the tokens issued before it; its refusals (existing file, no
//!   database, PostgreSQL).
//! - `crash`: `khoa serve` killed with SIGKILL mid-load and restarted, again and again: every
//!   token answered survives, and the SQLite file stays intact.
//! - `demo_cli`, `cli_admin`: the `khoa` binary itself (`demo`, `serve` and the admin verbs).
//! - `dialect_files`: dialects from definition files (`dialects.dir`): Casso from
//!   `dialects/casso.toml`, an edited copy, the definitions start-up refuses, `khoa dialect`.
//! - `dialect_snap`: SNAP from `dialects/snap.toml`: signed requests, wrong, missing, stale and
//!   replayed signatures, `khoa client key`.
//! - `dialect_hmac`: HMAC-SHA512 and HMAC-SHA256 signatures with a secret sealed by `khoa
//!   client key add --hmac-secret-file`; RSA keys and secrets never standing in for each other.
//! - `revocation`: RFC 7009 revocation, RFC 7662 introspection over every dialect's tokens,
//!   RFC 8414 / OpenID discovery.
//! - `forward_auth`, `nginx`: `/auth/verify` on its own, and behind a real nginx running the
//!   shipped `docs/nginx/khoa-forward-auth.conf`.
//! - `openapi`: `/openapi.json` lists exactly the routes served (schemathesis checks the
//!   answers: `tests/schemathesis/run.sh`).
//! - `third_party`: Authlib (Python) as a real standard client of khoa.
//! - `tls`: native TLS: HTTPS verified against a CA made in the test, refusals of plain HTTP,
//!   untrusting clients and bad certificate files, reload in-process and by SIGHUP.
//! - `log_secrets`: the real binary at trace level, every flow, and no secret in its output.
//! - `metrics`: `GET /metrics` and the `X-Request-Id` header.
//! - `key_rotation`: `khoa keys rotate` against a running server: pre-publication, the
//!   switch, retirement, JWKS cache headers.
//! - `multinode`: several `khoa serve` processes on one PostgreSQL database (a throwaway
//!   cluster, `khoa-pgtest`): shared rotation, revocation and keys, outages, secrets at rest.

mod abuse_http;
mod abuse_lockout;
mod abuse_protocol;
mod abuse_rate_limit;
mod abuse_shed;
mod agent;
mod at_rest;
mod audit;
mod authcode_browser;
mod authorization_code;
mod backup;
mod cli;
mod cli_admin;
mod cli_token;
mod client;
mod client_credentials;
mod crash;
mod demo_cli;
mod deploy;
mod dialect_bankhub;
mod dialect_derivative;
mod dialect_files;
mod dialect_hmac;
mod dialect_partner;
mod dialect_snap;
mod dialect_vietqr;
mod errors;
mod example_config;
mod expiry;
mod forward_auth;
mod health;
mod helpers;
mod key_rotation;
mod log_secrets;
mod metrics;
mod multinode;
mod nginx;
mod openapi;
mod restart;
mod revocation;
mod rotation;
mod scopes;
mod seed004;
mod third_party;
mod tls;
