//! `khoa-bench`: the load generator of khoa. It drives a running server (normally `khoa demo`)
//! with one keep-alive HTTP/1.1 connection per virtual client, either in a closed loop
//! (`--concurrency` clients, each sending as soon as it is answered) or at a fixed arrival rate
//! (`--rate`), warms up, measures for `--duration`, and reports requests/s, latency
//! percentiles and counts by status — a table, or one JSON object with `--json`.
//!
//! ```text
//! khoa-bench --target http://127.0.0.1:8080 --scenario client-credentials-jwt --duration 5
//! ```
//!
//! Scenarios: `healthz`, `client-credentials-jwt`, `client-credentials-opaque`, `password`,
//! `refresh`, `protected-resource-jwt`, `protected-resource-opaque`, `derivative`, `bankhub`,
//! `partner-login`, `partner-refresh`, `vietqr`; and two measured in-process, without a server:
//! `argon2-bound` and `sign-bound`. Credentials come from the demo's `demo.json`
//! (`--demo-json`) or are the demo's fixed ones. `client-credentials-opaque` needs the opaque
//! client `bench-opaque`, which the demo does not seed and HTTP cannot create: `bench/run.sh`
//! registers it with `khoa client add` first. Token introspection has no endpoint yet, so it
//! has no scenario; it will get one with the endpoint.
//!
//! Every run is bounded: in time (warm-up + duration, plus a few seconds' grace for answers
//! still in flight) and, with `--max-requests`, in count. The target must be a loopback address
//! unless `--allow-remote` is given. The exit status is 0 for a completed run even if requests
//! failed; the report's `errors` says how many did.
//!
//! # Layout
//!
//! - `cli.rs` — the arguments, their validation, the loopback rule and the scenario names.
//! - `creds.rs` — the credentials: `demo.json` or the demo's defaults; the `bench-opaque` client.
//! - `http.rs` — one hand-driven hyper HTTP/1.1 connection per virtual client; request
//!   templates, Basic and form encoding.
//! - `scenario.rs` — what each scenario sends ([`scenario::Plan`], prepared once) and each
//!   virtual client's state ([`scenario::Session`], a rotation chain for the refresh scenarios).
//! - `load.rs` — the load loop: warm-up, measured window, closed loop or fixed arrival rate,
//!   the request bound, the progress line.
//! - `stats.rs` — latencies, percentiles, counts by status; the table and the JSON.
//! - `bound.rs` — the in-process bounds: Argon2id hashes and Ed25519 signatures per core.

#![forbid(unsafe_code)]

mod bound;
mod cli;
mod creds;
mod http;
mod load;
mod scenario;
mod stats;

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::Value;
use std::process::ExitCode;

use cli::{Args, Settings};
use creds::Credentials;

fn main() -> ExitCode {
    let settings = match Args::parse().validate() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("khoa-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&settings) {
        Ok((json, table)) => {
            if settings.json {
                println!("{json}");
            } else {
                print!("{table}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("khoa-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the scenario; its report as JSON and as a table.
fn run(settings: &Settings) -> Result<(Value, String)> {
    if settings.scenario.is_in_process() {
        let bound = bound::measure(settings)?;
        return Ok((bound.to_json(), bound.to_table()));
    }
    let addr = cli::resolve(&settings.target, settings.allow_remote).map_err(anyhow::Error::msg)?;
    let creds = Credentials::load(settings.demo_json.as_deref())?;
    let report = runtime()?.block_on(load::run(settings, &creds, addr))?;
    Ok((report.to_json(), report.to_table()))
}

/// One worker per core the generator may use (`taskset -c 1` makes that one); on a single core
/// the current-thread scheduler spares the cross-thread wake-ups.
fn runtime() -> Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(cores);
        b
    };
    builder.enable_all().build().context("starting the runtime")
}
