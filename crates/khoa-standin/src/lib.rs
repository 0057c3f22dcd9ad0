//! A stand-in partner for tests: a standard OAuth 2.0 token endpoint (RFC 6749) and a protected
//! resource, on 127.0.0.1 and a port of its own, that misbehaves on request — a slow token
//! endpoint, 429 and 5xx with `Retry-After`, an endpoint that is down, dropped connections, a
//! refused refresh token, revoked tokens, 401 on the resource — and counts what its caller did,
//! so that a test of a token client or of `khoa agent` can assert on it ("one token call for
//! 100 callers", "no expired token ever presented", "no refresh token redeemed twice").
//!
//! Time is the test's: the stand-in reads a [`Now`] (milliseconds, usually a [`ManualClock`]
//! shared with the client under test) to issue and to expire tokens, and a slow endpoint waits
//! for [`StandIn::release_tokens`], not for a timer. No test of it waits for the real clock.
//!
//! ```no_run
//! # async fn example() {
//! use khoa_standin::{ManualClock, StandIn, CLIENT_ID, CLIENT_SECRET};
//!
//! let clock = ManualClock::new(0);
//! let standin = StandIn::start(clock.as_now()).await;
//! standin.set_ttl_ms(3_000);
//! let token_url = standin.url("/token");
//! // … point the client under test at `token_url` with CLIENT_ID and CLIENT_SECRET, call
//! // `standin.url("/resource/…")` through it, advance `clock`, then:
//! assert_eq!(standin.counts().expired_presented, 0);
//! # }
//! ```
//!
//! # Wire
//!
//! - `POST /token`, `application/x-www-form-urlencoded`; the client authenticates by HTTP Basic
//!   (§2.3.1) *or* by `client_id` and `client_secret` in the body, never both (§2.3). Grants
//!   `client_credentials`, `password` (user [`USERNAME`]) and `refresh_token`. Refresh tokens,
//!   answered by the `password` and `refresh_token` grants, are single-use and rotate.
//! - `/resource` and `/resource/*`, any method: `Authorization: Bearer` with a token issued
//!   and not expired by `now() < expires_at` gets 200 and an echo of the request as JSON; any
//!   other gets 401 with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1).
//!
//! # Layout
//!
//! - `lib.rs`: [`StandIn`] — start, the knobs a test turns, the observations it reads.
//! - `clock.rs`: [`Now`] and [`ManualClock`].
//! - `state.rs`: everything the stand-in remembers behind one `tokio::sync::watch` — knobs,
//!   [`Counts`], issued tokens, [`Recorded`] requests — and the rules on it: issuing, rotating,
//!   judging a presented token. Waiting (held token calls, [`StandIn::wait_until`]) is
//!   watching it change.
//! - `token.rs`: the `/token` handler: client authentication, the three grants, the RFC 6749
//!   §5.2 refusals.
//! - `resource.rs`: the `/resource` handler.
//! - `serve.rs`: the accept loop, which closes connections without an answer for
//!   [`StandIn::drop_connections`].

#![forbid(unsafe_code)]

mod clock;
mod resource;
mod serve;
mod state;
mod token;

use std::net::SocketAddr;
use std::sync::Arc;

pub use clock::{ManualClock, Now};
pub use state::{Counts, Recorded};

use state::Shared;

/// The one client the token endpoint knows.
pub const CLIENT_ID: &str = "standin";
/// [`CLIENT_ID`]'s secret.
pub const CLIENT_SECRET: &str = "standin-secret";
/// The one user of the `password` grant.
pub const USERNAME: &str = "alice";
/// [`USERNAME`]'s password.
pub const PASSWORD: &str = "alice-password";
/// The scope answered when the request names none.
pub const DEFAULT_SCOPE: &str = "read";
/// The access-token lifetime until [`StandIn::set_ttl_ms`] changes it.
pub const DEFAULT_TTL_MS: u64 = 60_000;

/// A running stand-in. Dropping it stops the server and closes its connections.
pub struct StandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl StandIn {
    /// Binds 127.0.0.1 on a free port and serves on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// When no port of 127.0.0.1 can be bound.
    pub async fn start(now: Now) -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("khoa-standin: cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("khoa-standin: no local address: {e}"));
        let shared = Arc::new(Shared::new(now));
        let server = tokio::spawn(serve::run(listener, shared.clone()));
        StandIn {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT{path}`; `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    // --- Knobs -----------------------------------------------------------------------------

    /// The lifetime of the access tokens issued from now on (default [`DEFAULT_TTL_MS`]). The
    /// answer's `expires_in` is whole seconds rounded *up*, as a server that rounds does: a
    /// 2 500 ms token is announced as 3 s, and a client that waits out all of `expires_in`
    /// presents it expired.
    pub fn set_ttl_ms(&self, ms: u64) {
        self.shared.update(|s| s.ttl_ms = ms);
    }

    /// Token calls from now on wait, without a timer, until [`StandIn::release_tokens`]; while
    /// they wait they count in [`Counts::max_concurrent_token_calls`], and
    /// [`StandIn::wait_until_held`] sees them. This is how a test makes N callers overlap
    /// deterministically. The failure knobs are applied when a held call is released, not
    /// when it arrives.
    pub fn hold_tokens(&self) {
        self.shared.update(|s| s.held = true);
    }

    /// Lets every held token call go on, and stops holding new ones.
    pub fn release_tokens(&self) {
        self.shared.update(|s| {
            s.held = false;
            // Calls held before this release go on even if the test holds again at once.
            s.release_epoch += 1;
        });
    }

    /// The next `n` token calls answer `status` (429, 500, 503 …) with
    /// `{"error":"temporarily_unavailable"}`, and `Retry-After: retry_after_secs` when given.
    /// Replaces what is left of an earlier `fail_tokens`. [`StandIn::set_down`] goes first:
    /// a call answered "down" does not use one of the `n`.
    pub fn fail_tokens(&self, n: u32, status: u16, retry_after_secs: Option<u64>) {
        assert!(
            (400..600).contains(&status),
            "khoa-standin: fail_tokens wants an error status, not {status}"
        );
        self.shared.update(|s| {
            s.fail_remaining = n;
            s.fail_status = status;
            s.fail_retry_after = retry_after_secs;
        });
    }

    /// While `down`, every token call answers 503 `{"error":"temporarily_unavailable"}`
    /// without `Retry-After`. The resource keeps answering.
    pub fn set_down(&self, down: bool) {
        self.shared.update(|s| s.down = down);
    }

    /// The next `n` connections that would be served are closed without any answer: a new one
    /// as soon as it is accepted, an open (kept-alive) one when its next request arrives — so a
    /// client's connection pool does not hide the knob. Either way the client sees a transport
    /// error, and the request reaches no handler (and no count).
    pub fn drop_connections(&self, n: u32) {
        self.shared.update(|s| s.drop_remaining = n);
    }

    /// While `yes`, the `refresh_token` grant answers 400 `invalid_grant` for every refresh
    /// token, as a server does that revoked the family. A refused token is not marked redeemed;
    /// redeeming an already redeemed one still counts in [`Counts::refresh_reused`].
    pub fn refuse_refresh(&self, yes: bool) {
        self.shared.update(|s| s.refuse_refresh = yes);
    }

    /// Every access token issued so far becomes invalid at the resource (401, and counted in
    /// [`Counts::unknown_presented`]). Refresh tokens stay redeemable: a client that refreshes
    /// after a revocation gets a working token in one call.
    pub fn revoke_all(&self) {
        self.shared.update(|s| s.revoke_all());
    }

    /// The next `n` resource calls answer 401 `invalid_token` whatever token they carry. They
    /// count in [`Counts::resource_calls`] only, not as expired or unknown.
    pub fn unauthorized_next(&self, n: u32) {
        self.shared.update(|s| s.unauthorized_remaining = n);
    }

    // --- Observations ----------------------------------------------------------------------

    /// What has been counted so far.
    pub fn counts(&self) -> Counts {
        self.shared.read(|s| s.counts)
    }

    /// The latest request to the resource, as received.
    pub fn last_resource_request(&self) -> Option<Recorded> {
        self.shared.read(|s| s.resource_requests.last().cloned())
    }

    /// Every request to the resource, oldest first.
    pub fn resource_requests(&self) -> Vec<Recorded> {
        self.shared.read(|s| s.resource_requests.clone())
    }

    /// The latest request to `/token`, as received (its body holds the credentials).
    pub fn last_token_request(&self) -> Option<Recorded> {
        self.shared.read(|s| s.last_token_request.clone())
    }

    /// How many token calls are waiting for [`StandIn::release_tokens`] right now.
    pub fn held_token_calls(&self) -> u32 {
        self.shared.read(|s| s.held_waiting)
    }

    /// Waits until at least `n` token calls are held — so that a test releases them only once
    /// they all overlap.
    pub async fn wait_until_held(&self, n: u32) {
        self.shared.wait_for(|s| s.held_waiting >= n).await;
    }

    /// Waits until the counts satisfy `done`, e.g. `|c| c.token_calls >= 2` once a client's
    /// background refresh is expected. Put a timeout around it in a test that could hang.
    pub async fn wait_until(&self, done: impl Fn(&Counts) -> bool) {
        self.shared.wait_for(|s| done(&s.counts)).await;
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        // The connections are tasks of the server task's `JoinSet`: aborting it ends them too.
        self.server.abort();
    }
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn").field("addr", &self.addr).finish()
    }
}
