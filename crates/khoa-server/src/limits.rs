//! Rate limits on the token endpoints: keyed token buckets (GCRA, `governor`) per client, per
//! partner and per source IP, and the source IP itself (`X-Forwarded-For` believed only from
//! configured proxies). Each dialect renders a refusal in its own shape: 429 with
//! `Retry-After` (RFC 6585 §4).

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::convert::Infallible;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use crate::config::RateLimitConfig;
use crate::state::AppState;

/// A request over a limit: retry after this many whole seconds (at least 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
}

/// The buckets of one node. A bucket whose rate is 0 is absent: nothing to check.
pub struct RateLimits {
    per_client: Option<DefaultKeyedRateLimiter<String>>,
    per_partner: Option<DefaultKeyedRateLimiter<String>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted_proxies: Vec<IpAddr>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        fn bucket<K: Clone + Hash + Eq>(
            per_sec: u32,
            burst: u32,
        ) -> Option<DefaultKeyedRateLimiter<K>> {
            let rate = NonZeroU32::new(per_sec)?;
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            Some(DefaultKeyedRateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        }
        RateLimits {
            per_client: bucket(cfg.per_client_per_sec, cfg.burst),
            per_partner: bucket(cfg.per_partner_per_sec, cfg.burst),
            per_ip: bucket(cfg.per_ip_per_sec, cfg.burst),
            trusted_proxies: cfg.trusted_proxies.clone(),
            clock: DefaultClock::default(),
        }
    }

    /// The source address's bucket; `None` (no peer address known) is not limited.
    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), Limited> {
        match (&self.per_ip, ip) {
            (Some(b), Some(ip)) => self.check(b, &ip),
            _ => Ok(()),
        }
    }

    /// The named client's bucket. Counted before the client is authenticated, on purpose: a
    /// flood of wrong secrets for a client is what the bucket is for.
    pub fn check_client(&self, client_id: Option<&str>) -> Result<(), Limited> {
        match (&self.per_client, client_id) {
            (Some(b), Some(id)) => self.check(b, &id.to_owned()),
            _ => Ok(()),
        }
    }

    pub fn check_partner(&self, code: &str) -> Result<(), Limited> {
        match &self.per_partner {
            Some(b) => self.check(b, &code.to_owned()),
            None => Ok(()),
        }
    }

    fn check<K: Clone + Hash + Eq>(
        &self,
        bucket: &DefaultKeyedRateLimiter<K>,
        key: &K,
    ) -> Result<(), Limited> {
        bucket.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            // Round up: a client that waits the whole seconds it is told finds a token.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Limited {
                retry_after_secs: secs.max(1),
            }
        })
    }

    /// Forgets the keys whose buckets are full again (they would allow a whole burst anyway),
    /// so that memory follows the recently active keys, not every key ever seen.
    pub fn retain_recent(&self) {
        if let Some(b) = &self.per_client {
            b.retain_recent();
        }
        if let Some(b) = &self.per_partner {
            b.retain_recent();
        }
        if let Some(b) = &self.per_ip {
            b.retain_recent();
        }
    }

    /// The client's address: the TCP peer, unless the peer is a trusted proxy; then the
    /// right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries to its
    /// left were written by the client and prove nothing).
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: &[&str]) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let mut hops = forwarded_for
            .iter()
            .rev()
            .flat_map(|h| h.rsplit(','))
            .map(|a| a.trim().parse::<IpAddr>());
        for hop in hops.by_ref() {
            match hop {
                Ok(ip) if self.trusted_proxies.contains(&ip) => continue,
                Ok(ip) => return Some(ip),
                // Unreadable: the chain cannot be followed further; the proxy is all we know.
                Err(_) => return Some(peer),
            }
        }
        Some(peer)
    }
}

/// The requesting client's IP address, as [`RateLimits::client_ip`] determines it. `None` when
/// the server was not started with connection info (router tests).
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(ClientIp(state.limits.client_ip(peer, &forwarded)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_sec: u32, burst: u32, proxies: &[&str]) -> RateLimits {
        RateLimits::new(&RateLimitConfig {
            per_client_per_sec: per_sec,
            per_partner_per_sec: per_sec,
            per_ip_per_sec: per_sec,
            burst,
            trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
        })
    }

    #[test]
    fn a_bucket_allows_its_burst_then_says_when_to_retry() {
        let l = limits(1, 3, &[]);
        for _ in 0..3 {
            l.check_client(Some("app")).unwrap();
        }
        let refused = l.check_client(Some("app")).unwrap_err();
        assert_eq!(refused.retry_after_secs, 1);
        // Keys are independent, and so are the three kinds of bucket.
        l.check_client(Some("other")).unwrap();
        l.check_partner("app").unwrap();
        l.check_ip(Some("192.0.2.1".parse().unwrap())).unwrap();
    }

    #[test]
    fn a_rate_of_zero_limits_nothing() {
        let l = limits(0, 0, &[]);
        for _ in 0..1000 {
            l.check_client(Some("app")).unwrap();
            l.check_ip(Some("192.0.2.1".parse().unwrap())).unwrap();
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let l = limits(1, 1, &["10.0.0.1", "10.0.0.2"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // An untrusted peer: the header is ignored.
        assert_eq!(
            l.client_ip(ip("192.0.2.9"), &["203.0.113.5"]),
            ip("192.0.2.9")
        );
        // A trusted peer: the right-most untrusted hop, past trusted ones.
        assert_eq!(
            l.client_ip(ip("10.0.0.1"), &["198.51.100.7, 203.0.113.5, 10.0.0.2"]),
            ip("203.0.113.5")
        );
        assert_eq!(
            l.client_ip(ip("10.0.0.1"), &["198.51.100.7", "203.0.113.5"]),
            ip("203.0.113.5"),
            "several header lines read as one list"
        );
        // Nothing usable: the proxy itself.
        assert_eq!(l.client_ip(ip("10.0.0.1"), &[]), ip("10.0.0.1"));
        assert_eq!(l.client_ip(ip("10.0.0.1"), &["junk"]), ip("10.0.0.1"));
        assert_eq!(l.client_ip(None, &["203.0.113.5"]), None);
    }
}
