//! The in-process bounds the targets are ratios of, timed on one core of this machine:
//!
//! - `argon2-bound`: one Argon2id hash at the OWASP parameters (m = 19456 KiB, t = 2, p = 1),
//!   the work of every password login; the password grant's bound is server cores ÷ its time.
//! - `sign-bound`: one Ed25519 signature over a JWT-sized signing input, the one thing a JWT
//!   issuance must add to a plain HTTP answer.
//!
//! Both run for the warm-up, then for `--duration` or `--max-requests` operations, whichever
//! ends first.

use anyhow::{Result, anyhow};
use argon2::{Algorithm, Argon2, Params, Version};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::cli::{Scenario, Settings};
use crate::stats::round3;

/// OWASP's Argon2id minimum (Password Storage Cheat Sheet), khoa's default.
pub const ARGON2_M_KIB: u32 = 19_456;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;

/// What a bound measurement found.
#[derive(Debug)]
pub struct Bound {
    pub scenario: &'static str,
    pub operation: &'static str,
    pub params: Value,
    pub operations: u64,
    pub elapsed: Duration,
}

impl Bound {
    /// Mean time of one operation, µs.
    pub fn op_us(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e6 / self.operations.max(1) as f64
    }

    pub fn per_second(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "operation": self.operation,
            "params": self.params,
            "operations": self.operations,
            "duration_s": round3(self.elapsed.as_secs_f64()),
            "op_us": round3(self.op_us()),
            "per_core_per_s": round3(self.per_second()),
        })
    }

    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "scenario   {}", self.scenario);
        let _ = writeln!(s, "operation  {} {}", self.operation, self.params);
        let _ = writeln!(
            s,
            "measured   {} in {:.2} s on one core",
            self.operations,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(s, "one        {:.1} µs", self.op_us());
        let _ = writeln!(s, "per core   {:.1}/s", self.per_second());
        s
    }
}

pub fn measure(settings: &Settings) -> Result<Bound> {
    match settings.scenario {
        Scenario::Argon2Bound => argon2(settings),
        Scenario::SignBound => Ok(sign(settings)),
        other => Err(anyhow!("{} is not an in-process bound", other.name())),
    }
}

fn argon2(settings: &Settings) -> Result<Bound> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(32))
        .map_err(|e| anyhow!("Argon2 parameters: {e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = *b"khoa-bench-salt!";
    let mut out = [0u8; 32];
    let (operations, elapsed) = timed(settings, || {
        argon
            .hash_password_into(b"correct horse battery staple", &salt, &mut out)
            .expect("valid Argon2 input");
        black_box(&out);
    });
    Ok(Bound {
        scenario: settings.scenario.name(),
        operation: "Argon2id hash",
        params: json!({ "m_kib": ARGON2_M_KIB, "t": ARGON2_T, "p": ARGON2_P }),
        operations,
        elapsed,
    })
}

fn sign(settings: &Settings) -> Bound {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    // About the size of a JWT access token's `header.claims` signing input.
    let message = [b'a'; 320];
    let (operations, elapsed) = timed(settings, || {
        black_box(key.sign(black_box(&message)));
    });
    Bound {
        scenario: settings.scenario.name(),
        operation: "Ed25519 signature",
        params: json!({ "message_bytes": message.len() }),
        operations,
        elapsed,
    }
}

/// Runs `op` for the warm-up, then counts how many complete in the window (at least one).
fn timed(settings: &Settings, mut op: impl FnMut()) -> (u64, Duration) {
    let warm_end = Instant::now() + settings.warmup;
    while Instant::now() < warm_end {
        op();
    }
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        op();
        n += 1;
        if n >= settings.max_requests || start.elapsed() >= settings.duration {
            break;
        }
    }
    (n, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Args;
    use clap::Parser;

    #[test]
    fn a_bound_counts_at_most_max_requests_operations() {
        let s = Args::try_parse_from([
            "khoa-bench",
            "--scenario",
            "sign-bound",
            "--warmup",
            "0",
            "--max-requests",
            "5",
        ])
        .unwrap()
        .validate()
        .unwrap();
        let b = measure(&s).unwrap();
        assert_eq!(b.operations, 5);
        assert!(b.per_second() > 0.0);
    }
}
