//! Counters of the work the layer did, for metrics and for tests that prove a bound.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub(crate) struct Counters {
    jwks_fetches: AtomicU64,
    jwks_fetch_failures: AtomicU64,
    introspections: AtomicU64,
    introspection_cache_hits: AtomicU64,
    revocation_polls: AtomicU64,
    revocation_poll_failures: AtomicU64,
    revoked_jwts_refused: AtomicU64,
}

impl Counters {
    pub(crate) fn jwks_fetch(&self) {
        self.jwks_fetches.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn jwks_failure(&self) {
        self.jwks_fetch_failures.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn introspection(&self) {
        self.introspections.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn introspection_cache_hit(&self) {
        self.introspection_cache_hits
            .fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn revocation_poll(&self) {
        self.revocation_polls.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn revocation_poll_failure(&self) {
        self.revocation_poll_failures
            .fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn revoked_jwt_refused(&self) {
        self.revoked_jwts_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            jwks_fetches: self.jwks_fetches.load(Ordering::Relaxed),
            jwks_fetch_failures: self.jwks_fetch_failures.load(Ordering::Relaxed),
            introspections: self.introspections.load(Ordering::Relaxed),
            introspection_cache_hits: self.introspection_cache_hits.load(Ordering::Relaxed),
            revocation_polls: self.revocation_polls.load(Ordering::Relaxed),
            revocation_poll_failures: self.revocation_poll_failures.load(Ordering::Relaxed),
            revoked_jwts_refused: self.revoked_jwts_refused.load(Ordering::Relaxed),
        }
    }
}

/// What a [`crate::KhoaAuth`] has done since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// JWKS requests attempted (successful or not).
    pub jwks_fetches: u64,
    pub jwks_fetch_failures: u64,
    /// Introspection requests sent (cache hits excluded).
    pub introspections: u64,
    pub introspection_cache_hits: u64,
    /// Requests for khoa's JWT revocation list attempted (successful or not).
    pub revocation_polls: u64,
    pub revocation_poll_failures: u64,
    /// Validly signed JWTs refused because their `jti` is on the revocation list.
    pub revoked_jwts_refused: u64,
}
