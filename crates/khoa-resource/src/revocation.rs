//! khoa's JWT revocation list, polled: how a JWT revoked at khoa (RFC 7009) is refused here
//! although its signature stays good.
//!
//! khoa serves `GET /connect/revoked-jwts?since=<unix seconds>` to confidential clients:
//! `{"until": <khoa's now>, "revoked": [{"jti": …, "exp": …}, …]}`, every JWT revoked at or
//! after `since` that has not expired. This module keeps the union of those answers in memory,
//! `jti` → `exp`, and refuses a listed `jti` with 401 `invalid_token`.
//!
//! Polling is lazy, on the request path, like the JWKS cache — no background task to spawn or
//! to stop. A request that finds the list older than the poll interval polls:
//!
//! - **single flight**: one async mutex. While a poll is in progress, the other requests go on
//!   with the list as it is, unless it is too stale to trust, in which case they wait for that
//!   poll and read its result instead of polling again. At most one request is ever in flight.
//! - **incremental, with overlap**: the first poll asks `since=0` (everything still unexpired);
//!   each next one asks from 60 s before the previous answer's `until`, so that a revocation
//!   committed just after khoa read the list, or on a khoa node whose clock lags, is not
//!   missed. Re-reading an entry is harmless. `until` is khoa's clock, so ours does not matter.
//! - **bounded while khoa is down**: a failed poll holds off the next attempt for one interval.
//!   The last list stays in use (a revocation made meanwhile is not seen, the rest are).
//! - **fail closed**: once the list is older than `max_staleness` (no successful poll for that
//!   long), every JWT is answered 503, as for an unreachable JWKS: past that bound a revoked
//!   token could pass, and "revoked" is not something we may guess.
//!
//! Entries are dropped once their `exp` (plus the leeway the `exp` check allows) has passed:
//! such a token is refused as expired anyway, so memory tracks the revocations of live tokens.

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

use crate::error::AuthError;
use crate::fetch::Fetcher;
use crate::introspect::basic_authorization;
use crate::stats::Counters;

/// How far before the previous `until` each poll starts (clock skew between khoa nodes, commit
/// lag). khoa's own nodes use the same overlap.
pub(crate) const POLL_OVERLAP_SECS: i64 = 60;

pub(crate) struct RevocationSettings {
    pub(crate) url: Uri,
    pub(crate) client_id: String,
    pub(crate) client_secret: SecretString,
    pub(crate) timeout: Duration,
    pub(crate) interval: Duration,
    pub(crate) max_staleness: Duration,
    /// Seconds an entry is kept past its `exp` (the leeway of the `exp` check).
    pub(crate) leeway: i64,
}

#[derive(Default)]
struct List {
    /// `jti` → `exp` of every revoked, unexpired JWT seen.
    revoked: HashMap<String, i64>,
    /// When the last successful poll was sent: the list is at least this fresh.
    synced_at: Option<Instant>,
    /// khoa's `until` of the last successful poll: the next poll's `since` (less the overlap).
    until: Option<i64>,
}

#[derive(Default)]
struct PollState {
    last_failure: Option<Instant>,
}

pub(crate) struct RevocationList {
    s: RevocationSettings,
    fetcher: Arc<dyn Fetcher>,
    list: RwLock<List>,
    polling: tokio::sync::Mutex<PollState>,
    counters: Arc<Counters>,
}

#[derive(Deserialize)]
struct ListResponse {
    until: i64,
    revoked: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    jti: String,
    exp: i64,
}

impl RevocationList {
    pub(crate) fn new(
        s: RevocationSettings,
        fetcher: Arc<dyn Fetcher>,
        counters: Arc<Counters>,
    ) -> Self {
        RevocationList {
            s,
            fetcher,
            list: RwLock::new(List::default()),
            polling: tokio::sync::Mutex::new(PollState::default()),
            counters,
        }
    }

    /// How long ago the list was last refreshed; `None` before the first successful poll.
    fn age(&self) -> Option<Duration> {
        let list = self.list.read().expect("revocation list lock poisoned");
        list.synced_at.map(|t| Instant::now().duration_since(t))
    }

    fn is_stale(&self, age: Option<Duration>) -> bool {
        age.is_none_or(|a| a > self.s.max_staleness)
    }

    /// Refuses a JWT whose `jti` khoa lists as revoked (401), polling first when the list is
    /// due; 503 when the list is too stale to trust. `now` is the Unix time of the request.
    pub(crate) async fn check(&self, jti: &str, now: i64) -> Result<(), AuthError> {
        self.refresh_if_due(now).await?;
        let listed = self
            .list
            .read()
            .expect("revocation list lock poisoned")
            .revoked
            .contains_key(jti);
        if listed {
            self.counters.revoked_jwt_refused();
            return Err(AuthError::InvalidToken("revoked"));
        }
        Ok(())
    }

    /// Polls when the list is older than the interval (single flight); fails only when the
    /// list is, after that, older than `max_staleness`.
    pub(crate) async fn refresh_if_due(&self, now: i64) -> Result<(), AuthError> {
        let age = self.age();
        if age.is_some_and(|a| a < self.s.interval) {
            return Ok(());
        }
        let mut state = match self.polling.try_lock() {
            Ok(g) => g,
            // Someone is polling: carry on with the current list while it can be trusted…
            Err(_) if !self.is_stale(age) => return Ok(()),
            // …else wait for that poll and read its result.
            Err(_) => self.polling.lock().await,
        };
        // Polled by someone else while we waited for the lock.
        let age = self.age();
        if age.is_some_and(|a| a < self.s.interval) {
            return Ok(());
        }
        let started = Instant::now();
        let failed_recently = state
            .last_failure
            .is_some_and(|t| started.duration_since(t) < self.s.interval);
        let detail = if failed_recently {
            "the JWT revocation list could not be fetched recently".to_owned()
        } else {
            self.counters.revocation_poll();
            match self.poll_once().await {
                Ok(answer) => {
                    state.last_failure = None;
                    self.merge(answer, started, now);
                    return Ok(());
                }
                Err(detail) => {
                    state.last_failure = Some(started);
                    self.counters.revocation_poll_failure();
                    tracing::warn!(url = %self.s.url, %detail, "polling the JWT revocation list failed");
                    detail
                }
            }
        };
        if self.is_stale(self.age()) {
            Err(AuthError::Unavailable(format!(
                "the JWT revocation list is stale: {detail}"
            )))
        } else {
            Ok(()) // the last list is still recent enough
        }
    }

    fn merge(&self, answer: ListResponse, started: Instant, now: i64) {
        let keep_after = now.saturating_sub(self.s.leeway);
        let mut list = self.list.write().expect("revocation list lock poisoned");
        list.revoked.retain(|_, exp| *exp >= keep_after);
        list.revoked.extend(
            answer
                .revoked
                .into_iter()
                .filter(|e| e.exp >= keep_after)
                .map(|e| (e.jti, e.exp)),
        );
        list.synced_at = Some(started);
        // Never move `since` backwards, whatever khoa's clock did.
        list.until = Some(list.until.map_or(answer.until, |u| u.max(answer.until)));
    }

    fn since(&self) -> i64 {
        let list = self.list.read().expect("revocation list lock poisoned");
        list.until
            .map_or(0, |u| u.saturating_sub(POLL_OVERLAP_SECS).max(0))
    }

    fn request_uri(&self, since: i64) -> Result<Uri, String> {
        let base = self.s.url.to_string();
        let sep = if self.s.url.query().is_some() {
            '&'
        } else {
            '?'
        };
        format!("{base}{sep}since={since}")
            .parse()
            .map_err(|e| format!("bad revocation list URL: {e}"))
    }

    async fn poll_once(&self) -> Result<ListResponse, String> {
        let authorization = basic_authorization(&self.s.client_id, &self.s.client_secret)
            .map_err(|_| "unencodable client credentials".to_owned())?;
        let request = Request::builder()
            .method(Method::GET)
            .uri(self.request_uri(self.since())?)
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, authorization)
            .body(Bytes::new())
            .map_err(|e| format!("bad revocation list request: {e}"))?;
        let res = tokio::time::timeout(self.s.timeout, self.fetcher.fetch(request))
            .await
            .map_err(|_| format!("no revocation list within {:?}", self.s.timeout))?
            .map_err(|e| e.to_string())?;
        match res.status() {
            StatusCode::OK => serde_json::from_slice(res.body())
                .map_err(|e| format!("unreadable revocation list: {e}")),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(format!(
                "the revocation list refused our client credentials ({})",
                res.status()
            )),
            other => Err(format!("the revocation list answered {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::{BoxFuture, FetchError};
    use http::Response;
    use serde_json::json;
    use std::sync::Mutex;

    const NOW: i64 = 1_700_000_000;

    /// khoa's endpoint in memory: serves `entries` (revoked at the given time), records each
    /// `since` asked for, can be made to fail or to answer slowly.
    #[derive(Default)]
    struct FakeKhoa {
        /// (jti, exp, revoked_at)
        entries: Mutex<Vec<(&'static str, i64, i64)>>,
        clock: Mutex<i64>,
        asked: Mutex<Vec<i64>>,
        down: Mutex<bool>,
        delay: Mutex<Duration>,
    }

    impl Fetcher for Arc<FakeKhoa> {
        fn fetch(&self, req: Request<Bytes>) -> BoxFuture<'_, Result<Response<Bytes>, FetchError>> {
            Box::pin(async move {
                assert!(req.headers()[header::AUTHORIZATION].is_sensitive());
                let since: i64 = req
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("since="))
                    .and_then(|s| s.parse().ok())
                    .expect("a since parameter");
                self.asked.lock().unwrap().push(since);
                let delay = *self.delay.lock().unwrap();
                tokio::time::sleep(delay).await;
                if *self.down.lock().unwrap() {
                    return Err(FetchError("connection refused".into()));
                }
                let now = *self.clock.lock().unwrap();
                let revoked: Vec<_> = self
                    .entries
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(_, exp, at)| *at >= since && *exp > now)
                    .map(|(jti, exp, _)| json!({"jti": jti, "exp": exp}))
                    .collect();
                let body = json!({"until": now, "revoked": revoked}).to_string();
                Ok(Response::new(Bytes::from(body)))
            })
        }
    }

    fn list(fake: &Arc<FakeKhoa>) -> (Arc<RevocationList>, Arc<Counters>) {
        *fake.clock.lock().unwrap() = NOW;
        let counters = Arc::new(Counters::default());
        let l = RevocationList::new(
            RevocationSettings {
                url: Uri::from_static("http://khoa.test/connect/revoked-jwts"),
                client_id: "rs".into(),
                client_secret: SecretString::from("secret"),
                timeout: Duration::from_secs(5),
                interval: Duration::from_secs(5),
                max_staleness: Duration::from_secs(60),
                leeway: 10,
            },
            Arc::new(fake.clone()),
            counters.clone(),
        );
        (Arc::new(l), counters)
    }

    async fn advance(fake: &FakeKhoa, secs: u64) {
        tokio::time::advance(Duration::from_secs(secs)).await;
        *fake.clock.lock().unwrap() += i64::try_from(secs).unwrap();
    }

    fn now(fake: &FakeKhoa) -> i64 {
        *fake.clock.lock().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn listed_jtis_are_refused_and_polls_follow_until_with_overlap() {
        let fake = Arc::new(FakeKhoa::default());
        let (l, counters) = list(&fake);
        fake.entries
            .lock()
            .unwrap()
            .push(("old", NOW + 600, NOW - 100));

        assert_eq!(
            l.check("old", NOW).await,
            Err(AuthError::InvalidToken("revoked"))
        );
        l.check("fresh", NOW).await.unwrap();
        assert_eq!(*fake.asked.lock().unwrap(), [0], "one poll, from the start");

        advance(&fake, 5).await;
        fake.entries
            .lock()
            .unwrap()
            .push(("fresh", NOW + 600, now(&fake)));
        assert!(l.check("fresh", now(&fake)).await.is_err());
        assert!(
            l.check("old", now(&fake)).await.is_err(),
            "kept from before"
        );
        assert_eq!(*fake.asked.lock().unwrap(), [0, NOW - 60]);
        let stats = counters.snapshot();
        assert_eq!((stats.revocation_polls, stats.revoked_jwts_refused), (2, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn entries_are_dropped_once_expired_past_the_leeway() {
        let fake = Arc::new(FakeKhoa::default());
        let (l, _) = list(&fake);
        fake.entries.lock().unwrap().push(("j", NOW + 20, NOW));
        l.check("x", NOW).await.unwrap();
        assert_eq!(l.list.read().unwrap().revoked.len(), 1);
        advance(&fake, 25).await;
        l.check("x", now(&fake)).await.unwrap();
        assert_eq!(
            l.list.read().unwrap().revoked.len(),
            1,
            "within the leeway the exp check would still pass it"
        );
        advance(&fake, 10).await;
        l.check("x", now(&fake)).await.unwrap();
        assert!(l.list.read().unwrap().revoked.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_share_one_poll() {
        let fake = Arc::new(FakeKhoa::default());
        *fake.delay.lock().unwrap() = Duration::from_millis(300);
        let (l, counters) = list(&fake);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let l = l.clone();
            set.spawn(async move { l.check("j", NOW).await });
        }
        for r in set.join_all().await {
            r.unwrap();
        }
        assert_eq!(
            counters.snapshot().revocation_polls,
            1,
            "no list yet: all wait"
        );

        // A due but trusted list: one request polls, the others do not wait for it.
        advance(&fake, 6).await;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let l = l.clone();
            set.spawn(async move { l.check("j", NOW + 6).await });
        }
        for r in set.join_all().await {
            r.unwrap();
        }
        assert_eq!(counters.snapshot().revocation_polls, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn while_khoa_is_down_the_last_list_serves_until_it_is_too_stale() {
        let fake = Arc::new(FakeKhoa::default());
        let (l, counters) = list(&fake);
        fake.entries.lock().unwrap().push(("j", NOW + 3600, NOW));
        l.check("ok", NOW).await.unwrap();

        *fake.down.lock().unwrap() = true;
        for _ in 0..11 {
            advance(&fake, 5).await;
            for _ in 0..10 {
                assert!(matches!(
                    l.check("j", now(&fake)).await,
                    Err(AuthError::InvalidToken("revoked"))
                ));
                l.check("ok", now(&fake)).await.unwrap();
            }
        }
        assert_eq!(counters.snapshot().revocation_polls, 12, "one per interval");

        advance(&fake, 6).await; // 61 s since the last good poll
        for _ in 0..10 {
            assert!(matches!(
                l.check("ok", now(&fake)).await,
                Err(AuthError::Unavailable(_))
            ));
        }
        let stats = counters.snapshot();
        assert_eq!(
            (stats.revocation_polls, stats.revocation_poll_failures),
            (13, 12)
        );

        *fake.down.lock().unwrap() = false;
        advance(&fake, 5).await;
        l.check("ok", now(&fake)).await.unwrap();
        assert_eq!(
            fake.asked.lock().unwrap().last(),
            Some(&(NOW - 60)),
            "resumes from the last good until"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_list_at_all_is_503_and_retried_once_per_interval() {
        let fake = Arc::new(FakeKhoa::default());
        *fake.down.lock().unwrap() = true;
        let (l, counters) = list(&fake);
        for _ in 0..5 {
            assert!(matches!(
                l.check("j", NOW).await,
                Err(AuthError::Unavailable(_))
            ));
        }
        assert_eq!(counters.snapshot().revocation_polls, 1);
    }
}
