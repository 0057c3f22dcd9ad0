//! `[password_hash]` and `[lockout]`: what a sign-in costs (Argon2id parameters, how many hash
//! at once) and what repeated failures cost the account.

use khoa_core::password::PasswordParams;
use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordHashConfig {
    /// Argon2id memory in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// Argon2id passes (OWASP: 2).
    pub iterations: u32,
    /// Argon2id lanes (OWASP: 1).
    pub parallelism: u32,
    /// Hashes computed at once; 0 means the number of CPU cores.
    pub max_concurrent: usize,
    /// Logins waiting for a hash slot; more get 503 with `Retry-After` at once. 0 means
    /// 8 × `max_concurrent`.
    pub max_queue: usize,
}

impl Default for PasswordHashConfig {
    fn default() -> Self {
        let p = PasswordParams::default();
        PasswordHashConfig {
            memory_kib: p.memory_kib,
            iterations: p.iterations,
            parallelism: p.parallelism,
            max_concurrent: 0,
            max_queue: 0,
        }
    }
}

impl PasswordHashConfig {
    pub fn params(&self) -> PasswordParams {
        PasswordParams {
            memory_kib: self.memory_kib,
            iterations: self.iterations,
            parallelism: self.parallelism,
        }
    }

    /// `max_concurrent`, 0 resolved to the number of CPU cores.
    pub fn concurrency(&self) -> usize {
        match self.max_concurrent {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// `max_queue`, 0 resolved to 8 × [`Self::concurrency`].
    pub fn queue(&self) -> usize {
        match self.max_queue {
            0 => 8 * self.concurrency(),
            n => n,
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        // Argon2's own minimum: 8 KiB of memory per lane.
        if self.memory_kib < 8 * self.parallelism.max(1)
            || self.iterations == 0
            || self.parallelism == 0
        {
            return invalid(
                "password_hash",
                "memory_kib must be at least 8 × parallelism, iterations and parallelism at least 1",
            );
        }
        Ok(())
    }
}

/// Brute-force protection: after `threshold` failed sign-ins in a row a username (known or
/// not) is locked for `base_secs`; each further failure after the lock ends doubles the lock,
/// up to `max_secs`. Failures more than `max_secs` apart start the count anew. While locked,
/// even the right password is refused; `khoa user unlock NAME` lifts a lock at once. The count
/// lives in the database, so every node shares it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockoutConfig {
    /// Failures that lock the account; 0 turns lockout off. `KHOA_LOCKOUT__THRESHOLD`.
    pub threshold: u32,
    /// Seconds of the first lock.
    pub base_secs: i64,
    /// Longest lock, and how long a failure is remembered.
    pub max_secs: i64,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            threshold: 5,
            base_secs: 60,
            max_secs: 3600,
        }
    }
}

impl LockoutConfig {
    pub fn policy(&self) -> khoa_core::store::LockoutPolicy {
        khoa_core::store::LockoutPolicy {
            threshold: self.threshold,
            base_secs: self.base_secs,
            max_secs: self.max_secs,
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        // With lockout off the durations are never read.
        if self.threshold > 0 && self.base_secs < 1 {
            return invalid("lockout.base_secs", "must be at least 1");
        }
        if self.threshold > 0 && self.max_secs < self.base_secs {
            return invalid("lockout.max_secs", "must be at least lockout.base_secs");
        }
        Ok(())
    }
}
