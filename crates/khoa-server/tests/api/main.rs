//! The HTTP integration tests: one binary, the real server on port 0 per test (STYLE 14).
//!
//! - `helpers`: `spawn_app()`, typed request, seeding and assertion helpers.
//! - `cli`: running the `khoa` binary with a clean environment and capturing its output.
//! - `authorization_code`: the code flow with PKCE, the login page, ID tokens and userinfo;
//!   `authcode_browser` drives the same flow in headless Chromium (`tests/python/`).
//! - `seed004`: seed 004's own sample request and the answer it documents.
//! - `scopes`, `errors`, `client_credentials`, `rotation`, `expiry`: the token endpoint and the
//!   protected resource, one area each.
//! - `restart`, `at_rest`: what survives a restart, and what never reaches the disk.
//! - `demo_cli`, `cli_admin`: the `khoa` binary itself (`demo`, `serve` and the admin verbs).
//! - `multinode`: several `khoa serve` processes on one PostgreSQL database (a throwaway
//!   cluster, `khoa-pgtest`): shared rotation, revocation and keys, outages, secrets at rest.

mod at_rest;
mod authcode_browser;
mod authorization_code;
mod cli;
mod cli_admin;
mod client_credentials;
mod demo_cli;
mod dialect_bankhub;
mod dialect_derivative;
mod dialect_partner;
mod dialect_vietqr;
mod errors;
mod expiry;
mod health;
mod helpers;
mod multinode;
mod restart;
mod rotation;
mod scopes;
mod seed004;
