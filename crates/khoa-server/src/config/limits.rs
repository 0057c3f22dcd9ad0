//! `[rate_limit]`: the token buckets in front of every token endpoint, and which proxies'
//! `X-Forwarded-For` names the client.

use serde::{Deserialize, Serialize};

/// Token buckets (GCRA) on every token endpoint of every dialect, on revocation,
/// introspection and the login form's POST. A request beyond a bucket is answered 429 with
/// `Retry-After` (RFC 6585 §4) in the dialect's own error shape. Each rate is requests per
/// second; 0 turns that bucket off (the default: size them for your partners). Buckets are per
/// node: with N nodes behind a balancer a key gets up to N times the rate.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Per `client_id` (dialects that bind all their users to one client share its bucket).
    pub per_client_per_sec: u32,
    /// Per `Partner-Code` of the encrypted dialect (seed 002).
    pub per_partner_per_sec: u32,
    /// Per source IP address: the TCP peer, or the `X-Forwarded-For` client when the peer is
    /// one of `trusted_proxies`.
    pub per_ip_per_sec: u32,
    /// Requests a bucket allows at once after a quiet spell; 0 means one second's worth.
    pub burst: u32,
    /// Reverse proxies whose `X-Forwarded-For` is believed (the right-most address not itself
    /// a trusted proxy is the client). Empty: the header is ignored, as anyone can send it.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}
