//! What the stand-in remembers, and the rules on it.
//!
//! One `State` behind one `tokio::sync::watch` sender rather than a mutex and a handful of
//! atomics: every change is one closure under one lock (a refresh token is checked, marked
//! redeemed and replaced with no gap between), and every change wakes whoever waits for a
//! condition on it — a held token call for its release, a test for "5 calls held". Nothing is
//! held across an `.await`.

use std::collections::HashMap;

use base64::Engine as _;
use rand::RngCore as _;
use tokio::sync::watch;

use crate::{DEFAULT_TTL_MS, Now};

/// What the stand-in has counted since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every request to `/token` that reached the handler, whatever it was answered.
    pub token_calls: u32,
    /// Successful `client_credentials` or `password` grants.
    pub logins: u32,
    /// Successful `refresh_token` grants.
    pub refreshes: u32,
    /// Redemptions of an already redeemed refresh token (must stay 0 in a client's tests).
    pub refresh_reused: u32,
    /// The most token calls in the handler at one time (held ones included).
    pub max_concurrent_token_calls: u32,
    /// Every request to the resource.
    pub resource_calls: u32,
    /// Resource calls with a token that was valid but has expired by `now` (must stay 0 under
    /// steady traffic).
    pub expired_presented: u32,
    /// Resource calls with a token never issued or revoked, or without one.
    pub unknown_presented: u32,
}

/// One request as the stand-in received it.
#[derive(Clone, PartialEq, Eq)]
pub struct Recorded {
    /// `GET`, `POST` …
    pub method: String,
    /// The request target's path and query, e.g. `/resource/items?page=2`.
    pub path_and_query: String,
    /// Every header in the order received, names lowercased, repeated names kept.
    pub headers: Vec<(String, String)>,
    /// The body's bytes.
    pub body: Vec<u8>,
}

impl Recorded {
    pub(crate) fn new(
        method: &axum::http::Method,
        uri: &axum::http::Uri,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) -> Recorded {
        Recorded {
            method: method.as_str().to_owned(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
            headers: headers
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value)
                })
                .collect(),
            body: body.to_vec(),
        }
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(path, _)| path)
    }

    /// The query, without the `?`; `None` when the target had none.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, query)| query)
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (any case), in the order received.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Credentials stay out of a failing test's output: `authorization` and `cookie` values show
/// their first characters only, and the body (a token request's holds the client secret or
/// the password) only its length. [`Recorded::body_text`] prints it on purpose.
impl std::fmt::Debug for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if is_credential_header(name) {
                    let prefix: String = value.chars().take(10).collect();
                    format!("{prefix}…")
                } else {
                    value.clone()
                };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("Recorded")
            .field("method", &self.method)
            .field("path_and_query", &self.path_and_query)
            .field("headers", &headers)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

fn is_credential_header(name: &str) -> bool {
    [
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-otp-token",
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

/// The shared half of a [`crate::StandIn`], held by the handlers and the accept loop.
pub(crate) struct Shared {
    now: Now,
    state: watch::Sender<State>,
}

impl Shared {
    pub(crate) fn new(now: Now) -> Shared {
        Shared {
            now,
            state: watch::Sender::new(State::default()),
        }
    }

    pub(crate) fn now(&self) -> u64 {
        (self.now)()
    }

    /// Changes the state under its lock and wakes every waiter.
    pub(crate) fn update<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let mut out = None;
        self.state.send_modify(|s| out = Some(change(s)));
        out.expect("send_modify runs its closure")
    }

    pub(crate) fn read<R>(&self, look: impl FnOnce(&State) -> R) -> R {
        look(&self.state.borrow())
    }

    /// Returns once `done` holds, checked now and after every change.
    pub(crate) async fn wait_for(&self, done: impl Fn(&State) -> bool) {
        let mut changes = self.state.subscribe();
        // Fails only when the sender is gone, and `self` owns it. `let _` also drops the read
        // guard the call returns at once: an `update` behind it would deadlock.
        let _ = changes.wait_for(|s| done(s)).await;
    }

    /// Whether the connection at hand is to be closed without an answer; uses up one drop.
    pub(crate) fn take_dropped_connection(&self) -> bool {
        // `send_if_modified`: the common case, nothing to drop, wakes nobody.
        self.state.send_if_modified(|s| {
            let drop = s.drop_remaining > 0;
            s.drop_remaining = s.drop_remaining.saturating_sub(1);
            drop
        })
    }
}

/// An access token the resource knows. Revoked ones are forgotten: at the resource they are
/// as unknown as a token never issued.
type ExpiresAt = u64;

/// A refresh token the token endpoint issued.
struct RefreshToken {
    /// The scope granted with it, which its successors keep (RFC 6749 §6).
    scope: String,
    redeemed: bool,
}

pub(crate) struct State {
    // Knobs, set by `StandIn`.
    pub(crate) ttl_ms: u64,
    pub(crate) held: bool,
    /// Bumped by every release, so a call held before it goes on even when the test holds
    /// again before the call has woken.
    pub(crate) release_epoch: u64,
    pub(crate) fail_remaining: u32,
    pub(crate) fail_status: u16,
    pub(crate) fail_retry_after: Option<u64>,
    pub(crate) down: bool,
    pub(crate) drop_remaining: u32,
    pub(crate) refuse_refresh: bool,
    pub(crate) unauthorized_remaining: u32,

    // Live, kept by the handlers.
    pub(crate) in_flight: u32,
    pub(crate) held_waiting: u32,
    pub(crate) counts: Counts,
    access: HashMap<String, ExpiresAt>,
    refresh: HashMap<String, RefreshToken>,
    pub(crate) resource_requests: Vec<Recorded>,
    pub(crate) last_token_request: Option<Recorded>,
}

/// A successful token answer, before it is rendered (RFC 6749 §5.1).
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) expires_in: u64,
    pub(crate) refresh_token: Option<String>,
    pub(crate) scope: String,
}

/// Why a refresh token was not redeemed; each is `invalid_grant` on the wire.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotRedeemed {
    Unknown,
    Reused,
    Refused,
    /// A scope wider than the one originally granted (§6): `invalid_scope`.
    WiderScope,
}

/// What the resource makes of a presented token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid,
    /// `unauthorized_next`: refused whatever the token.
    Forced,
    Expired,
    Unknown,
    Missing,
}

/// A failure injected by `set_down` or `fail_tokens`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Injected {
    pub(crate) status: u16,
    pub(crate) retry_after_secs: Option<u64>,
}

impl Default for State {
    fn default() -> State {
        State {
            ttl_ms: DEFAULT_TTL_MS,
            held: false,
            release_epoch: 0,
            fail_remaining: 0,
            fail_status: 503,
            fail_retry_after: None,
            down: false,
            drop_remaining: 0,
            refuse_refresh: false,
            unauthorized_remaining: 0,
            in_flight: 0,
            held_waiting: 0,
            counts: Counts::default(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            resource_requests: Vec::new(),
            last_token_request: None,
        }
    }
}

impl State {
    /// A fresh login (`client_credentials` or `password`).
    pub(crate) fn login(&mut self, now: u64, scope: String, with_refresh: bool) -> Issued {
        self.counts.logins += 1;
        self.issue(now, scope, with_refresh)
    }

    /// Redeems `token` for a new access token and its successor (§6); the token is used up.
    pub(crate) fn redeem(
        &mut self,
        now: u64,
        token: &str,
        scope: Option<&str>,
    ) -> Result<Issued, NotRedeemed> {
        let Some(record) = self.refresh.get_mut(token) else {
            return Err(NotRedeemed::Unknown);
        };
        if record.redeemed {
            self.counts.refresh_reused += 1;
            return Err(NotRedeemed::Reused);
        }
        if self.refuse_refresh {
            return Err(NotRedeemed::Refused);
        }
        let scope = match scope {
            None => record.scope.clone(),
            Some(asked) if is_within(asked, &record.scope) => asked.to_owned(),
            Some(_) => return Err(NotRedeemed::WiderScope),
        };
        record.redeemed = true;
        self.counts.refreshes += 1;
        Ok(self.issue(now, scope, true))
    }

    fn issue(&mut self, now: u64, scope: String, with_refresh: bool) -> Issued {
        let access_token = random_token();
        self.access
            .insert(access_token.clone(), now.saturating_add(self.ttl_ms));
        let refresh_token = with_refresh.then(|| {
            let token = random_token();
            let record = RefreshToken {
                scope: scope.clone(),
                redeemed: false,
            };
            self.refresh.insert(token.clone(), record);
            token
        });
        Issued {
            access_token,
            expires_in: self.ttl_ms.div_ceil(1000),
            refresh_token,
            scope,
        }
    }

    /// Judges a resource call's token and counts it.
    pub(crate) fn judge(&mut self, token: Option<&str>, now: u64) -> Verdict {
        self.counts.resource_calls += 1;
        if self.unauthorized_remaining > 0 {
            self.unauthorized_remaining -= 1;
            return Verdict::Forced;
        }
        let verdict = match token.map(|t| self.access.get(t)) {
            None => Verdict::Missing,
            Some(None) => Verdict::Unknown,
            Some(Some(&expires_at)) if now < expires_at => Verdict::Valid,
            Some(Some(_)) => Verdict::Expired,
        };
        match verdict {
            Verdict::Expired => self.counts.expired_presented += 1,
            Verdict::Unknown | Verdict::Missing => self.counts.unknown_presented += 1,
            Verdict::Valid | Verdict::Forced => {}
        }
        verdict
    }

    pub(crate) fn revoke_all(&mut self) {
        self.access.clear();
    }

    /// The failure this token call answers, if one is injected; uses up one of `fail_tokens`.
    pub(crate) fn take_injected_failure(&mut self) -> Option<Injected> {
        if self.down {
            return Some(Injected {
                status: 503,
                retry_after_secs: None,
            });
        }
        if self.fail_remaining == 0 {
            return None;
        }
        self.fail_remaining -= 1;
        Some(Injected {
            status: self.fail_status,
            retry_after_secs: self.fail_retry_after,
        })
    }
}

/// Whether every scope token of `asked` is in `granted` (space-separated, §3.3).
fn is_within(asked: &str, granted: &str) -> bool {
    asked
        .split(' ')
        .filter(|s| !s.is_empty())
        .all(|s| granted.split(' ').any(|g| g == s))
}

/// 256 random bits, base64url: as unguessable as a real server's opaque tokens.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            ttl_ms: 2_500,
            ..State::default()
        }
    }

    #[test]
    fn expires_in_is_the_lifetime_rounded_up_to_whole_seconds() {
        let mut s = state();
        assert_eq!(s.login(0, "read".into(), false).expires_in, 3);
        s.ttl_ms = 3_000;
        assert_eq!(s.login(0, "read".into(), false).expires_in, 3);
        s.ttl_ms = 1;
        assert_eq!(s.login(0, "read".into(), false).expires_in, 1);
    }

    #[test]
    fn a_token_is_valid_strictly_before_its_expiry() {
        let mut s = state();
        let token = s.login(1_000, "read".into(), false).access_token;
        assert_eq!(s.judge(Some(&token), 3_499), Verdict::Valid);
        assert_eq!(s.judge(Some(&token), 3_500), Verdict::Expired);
        assert_eq!(s.counts.expired_presented, 1);
    }

    #[test]
    fn a_refreshed_scope_may_narrow_but_not_widen() {
        let mut s = state();
        let first = s.login(0, "read write".into(), true).refresh_token.unwrap();
        let second = s.redeem(0, &first, Some("read")).unwrap();
        assert_eq!(second.scope, "read");
        let third = second.refresh_token.unwrap();
        assert_eq!(
            s.redeem(0, &third, Some("read write")).err(),
            Some(NotRedeemed::WiderScope)
        );
        // Refusing a wider scope does not use the token up.
        assert!(s.redeem(0, &third, None).is_ok());
        assert_eq!(s.counts.refresh_reused, 0);
    }

    #[test]
    fn a_refused_refresh_token_is_not_used_up() {
        let mut s = state();
        let token = s.login(0, "read".into(), true).refresh_token.unwrap();
        s.refuse_refresh = true;
        assert_eq!(s.redeem(0, &token, None).err(), Some(NotRedeemed::Refused));
        s.refuse_refresh = false;
        assert!(s.redeem(0, &token, None).is_ok());
        assert_eq!(s.counts.refresh_reused, 0);
    }

    #[test]
    fn down_goes_before_fail_tokens_and_leaves_them_for_later() {
        let mut s = state();
        s.fail_remaining = 1;
        s.fail_status = 429;
        s.down = true;
        assert_eq!(s.take_injected_failure().unwrap().status, 503);
        assert_eq!(s.fail_remaining, 1);
        s.down = false;
        assert_eq!(s.take_injected_failure().unwrap().status, 429);
        assert!(s.take_injected_failure().is_none());
    }

    #[test]
    fn recorded_debug_hides_credentials() {
        let r = Recorded {
            method: "POST".into(),
            path_and_query: "/token".into(),
            headers: vec![(
                "authorization".into(),
                "Basic c3RhbmRpbjpzdGFuZGluLXNlY3JldA==".into(),
            )],
            body: b"client_secret=standin-secret".to_vec(),
        };
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("c3RhbmRpbjpzdGFuZGluLXNlY3JldA=="),
            "{shown}"
        );
        assert!(!shown.contains("standin-secret"), "{shown}");
        assert!(shown.contains("<28 bytes>"), "{shown}");
    }
}
