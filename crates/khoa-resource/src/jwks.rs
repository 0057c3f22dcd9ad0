//! The issuer's signing keys (RFC 7517 JWKS, RFC 8037 OKP/Ed25519), cached.
//!
//! The cache answers from memory while it is fresh (`Cache-Control: max-age` of the response,
//! capped by the configured maximum). It goes back to the issuer when it is stale or when a
//! token names a `kid` it does not hold — that is how a key rotated in at khoa is picked up
//! without a restart. Every fetch is:
//!
//! - **single-flight**: one async mutex; whoever waited on it while another request fetched
//!   reads that fetch's result instead of fetching again;
//! - **rate-limited**: a `kid` we do not hold triggers at most one fetch per
//!   `min_refetch_interval`, so a stream of tokens with made-up `kid`s costs the issuer one
//!   request per interval, not one per token. A fetch that fails holds off every further attempt
//!   for the interval too (an issuer that is down is not hammered). Refreshing a stale cache
//!   does not count against the unknown-`kid` budget, so a key rotated in just after a routine
//!   refresh is still picked up at once.
//!
//! When a refetch fails, keys already held keep working (stale-if-error); a `kid` we do not
//! hold is then answered 503, not 401, since the token may well be good.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use ed25519_dalek::VerifyingKey;
use http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

use crate::error::AuthError;
use crate::fetch::Fetcher;
use crate::stats::Counters;

/// One fetched JWKS.
struct KeySet {
    keys: HashMap<String, VerifyingKey>,
    fetched_at: Instant,
    max_age: Duration,
    /// Counts successful fetches: a request that waited for the fetch lock tells from it
    /// whether someone else fetched meanwhile.
    generation: u64,
}

impl KeySet {
    fn is_fresh(&self, now: Instant) -> bool {
        now.duration_since(self.fetched_at) < self.max_age
    }
}

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    last_failed: bool,
    /// The last fetch a `kid` missing from a fresh set caused.
    last_unknown_kid: Option<Instant>,
}

pub(crate) struct JwksCache {
    url: Uri,
    fetcher: Arc<dyn Fetcher>,
    timeout: Duration,
    max_age: Duration,
    min_refetch_interval: Duration,
    current: RwLock<Option<Arc<KeySet>>>,
    fetch: tokio::sync::Mutex<FetchState>,
    counters: Arc<Counters>,
}

pub(crate) struct JwksSettings {
    pub(crate) url: Uri,
    pub(crate) timeout: Duration,
    pub(crate) max_age: Duration,
    pub(crate) min_refetch_interval: Duration,
}

impl JwksCache {
    pub(crate) fn new(s: JwksSettings, fetcher: Arc<dyn Fetcher>, counters: Arc<Counters>) -> Self {
        JwksCache {
            url: s.url,
            fetcher,
            timeout: s.timeout,
            max_age: s.max_age,
            min_refetch_interval: s.min_refetch_interval,
            current: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            counters,
        }
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.current.read().expect("JWKS lock poisoned").clone()
    }

    /// The key named `kid`: from memory when fresh, else after at most one (shared, rate-limited)
    /// fetch.
    pub(crate) async fn key(&self, kid: &str) -> Result<VerifyingKey, AuthError> {
        let seen = self.snapshot();
        if let Some(set) = &seen
            && set.is_fresh(Instant::now())
            && let Some(k) = set.keys.get(kid)
        {
            return Ok(*k);
        }
        self.refresh_for(kid, seen.map(|s| s.generation)).await
    }

    /// Fetches the JWKS ahead of the first request (optional: the first request would).
    pub(crate) async fn prefetch(&self) -> Result<(), AuthError> {
        let seen = self.snapshot().map(|s| s.generation);
        match self.refresh_for("", seen).await {
            Ok(_) | Err(AuthError::InvalidToken(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn refresh_for(&self, kid: &str, seen: Option<u64>) -> Result<VerifyingKey, AuthError> {
        let mut state = self.fetch.lock().await;
        let held = self.snapshot();
        let lookup =
            |set: &Option<Arc<KeySet>>| set.as_ref().and_then(|s| s.keys.get(kid).copied());

        // Someone fetched while we waited for the lock: theirs is as new as ours would be.
        if held.as_ref().map(|s| s.generation) != seen {
            return lookup(&held).ok_or(AuthError::InvalidToken("unknown kid"));
        }
        let now = Instant::now();
        let recent = |t: Option<Instant>| {
            t.is_some_and(|t| now.duration_since(t) < self.min_refetch_interval)
        };
        let unknown_in_fresh = held.as_ref().is_some_and(|s| s.is_fresh(now));
        let rate_limited = if state.last_failed || !unknown_in_fresh {
            recent(state.last_attempt)
        } else {
            recent(state.last_unknown_kid)
        };
        if rate_limited {
            return match lookup(&held) {
                Some(k) => Ok(k),
                None if state.last_failed || held.is_none() => Err(AuthError::Unavailable(
                    "the JWKS could not be fetched recently".into(),
                )),
                None => Err(AuthError::InvalidToken("unknown kid")),
            };
        }

        state.last_attempt = Some(now);
        if unknown_in_fresh {
            state.last_unknown_kid = Some(now);
        }
        self.counters.jwks_fetch();
        match self.fetch_once().await {
            Ok((keys, max_age)) => {
                state.last_failed = false;
                let set = Arc::new(KeySet {
                    keys,
                    fetched_at: Instant::now(),
                    max_age,
                    generation: seen.map_or(1, |g| g + 1),
                });
                *self.current.write().expect("JWKS lock poisoned") = Some(set.clone());
                lookup(&Some(set)).ok_or(AuthError::InvalidToken("unknown kid"))
            }
            Err(detail) => {
                state.last_failed = true;
                self.counters.jwks_failure();
                tracing::warn!(url = %self.url, %detail, "fetching the JWKS failed");
                // Stale-if-error: a key we hold stays usable while the issuer is unreachable.
                lookup(&held).ok_or(AuthError::Unavailable(detail))
            }
        }
    }

    async fn fetch_once(&self) -> Result<(HashMap<String, VerifyingKey>, Duration), String> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(self.url.clone())
            .header(header::ACCEPT, "application/jwk-set+json, application/json")
            .body(Bytes::new())
            .map_err(|e| format!("bad JWKS request: {e}"))?;
        let res = tokio::time::timeout(self.timeout, self.fetcher.fetch(request))
            .await
            .map_err(|_| format!("no JWKS response within {:?}", self.timeout))?
            .map_err(|e| e.to_string())?;
        if res.status() != StatusCode::OK {
            return Err(format!("JWKS answered {}", res.status()));
        }
        let keys = parse_jwks(res.body())?;
        let max_age = cache_max_age(res.headers())
            .unwrap_or(self.max_age)
            .min(self.max_age);
        Ok((keys, max_age))
    }
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
}

/// The Ed25519 signature keys of a JWKS, by `kid`. Keys of other types, for other uses or
/// without a `kid` are skipped (RFC 7517 §5: ignore what you do not understand); a malformed
/// Ed25519 key is an error, since it means the issuer is broken.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<HashMap<String, VerifyingKey>, String> {
    let jwks: Jwks = serde_json::from_slice(body).map_err(|e| format!("unreadable JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for k in jwks.keys {
        let usable = k.kty == "OKP"
            && k.crv.as_deref() == Some("Ed25519")
            && k.use_.as_deref().is_none_or(|u| u == "sig")
            && k.alg.as_deref().is_none_or(|a| a == crate::jwt::ALG);
        let (true, Some(kid)) = (usable, k.kid) else {
            continue;
        };
        let key =
            k.x.and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
                .and_then(|x| <[u8; 32]>::try_from(x).ok())
                .and_then(|x| VerifyingKey::from_bytes(&x).ok())
                .ok_or_else(|| format!("JWKS key {kid} is not a valid Ed25519 key"))?;
        keys.insert(kid, key);
    }
    Ok(keys)
}

/// RFC 9111 §5.2.2: `max-age` of a response; `no-store`/`no-cache` mean zero.
pub(crate) fn cache_max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
            match name.to_ascii_lowercase().as_str() {
                "no-store" | "no-cache" => return Some(Duration::ZERO),
                "max-age" => {
                    if let Ok(secs) = arg.trim_matches('"').parse::<u64>() {
                        max_age = Some(Duration::from_secs(secs));
                    }
                }
                _ => {}
            }
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::{BoxFuture, FetchError};
    use crate::jwt::tests::key;
    use http::Response;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn jwk(seed: u8, kid: &str) -> serde_json::Value {
        let x = URL_SAFE_NO_PAD.encode(key(seed).verifying_key().as_bytes());
        serde_json::json!({"kty":"OKP","crv":"Ed25519","x":x,"kid":kid,"alg":"EdDSA","use":"sig"})
    }

    /// A JWKS endpoint in memory: the keys it serves can change, it counts requests, and it
    /// can be made to fail or to answer slowly.
    #[derive(Default)]
    struct FakeIssuer {
        keys: Mutex<Vec<serde_json::Value>>,
        cache_control: Mutex<Option<&'static str>>,
        down: Mutex<bool>,
        delay: Mutex<Duration>,
        hits: AtomicUsize,
    }

    impl Fetcher for Arc<FakeIssuer> {
        fn fetch(&self, _: Request<Bytes>) -> BoxFuture<'_, Result<Response<Bytes>, FetchError>> {
            Box::pin(async move {
                self.hits.fetch_add(1, Ordering::SeqCst);
                let delay = *self.delay.lock().unwrap();
                tokio::time::sleep(delay).await;
                if *self.down.lock().unwrap() {
                    return Err(FetchError("connection refused".into()));
                }
                let body = serde_json::json!({"keys": *self.keys.lock().unwrap()}).to_string();
                let mut res = Response::builder();
                if let Some(cc) = *self.cache_control.lock().unwrap() {
                    res = res.header(header::CACHE_CONTROL, cc);
                }
                Ok(res.body(Bytes::from(body)).unwrap())
            })
        }
    }

    fn cache(issuer: &Arc<FakeIssuer>) -> Arc<JwksCache> {
        Arc::new(JwksCache::new(
            JwksSettings {
                url: Uri::from_static("http://khoa.test/.well-known/jwks.json"),
                timeout: Duration::from_secs(5),
                max_age: Duration::from_secs(300),
                min_refetch_interval: Duration::from_secs(10),
            },
            Arc::new(issuer.clone()),
            Arc::new(Counters::default()),
        ))
    }

    fn issuer_with(keys: Vec<serde_json::Value>) -> Arc<FakeIssuer> {
        let i = Arc::new(FakeIssuer::default());
        *i.keys.lock().unwrap() = keys;
        i
    }

    fn hits(i: &FakeIssuer) -> usize {
        i.hits.load(Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn known_keys_are_served_from_memory_until_max_age() {
        let issuer = issuer_with(vec![jwk(1, "k1")]);
        let c = cache(&issuer);
        for _ in 0..5 {
            assert_eq!(c.key("k1").await.unwrap(), key(1).verifying_key());
        }
        assert_eq!(hits(&issuer), 1);
        tokio::time::advance(Duration::from_secs(301)).await;
        c.key("k1").await.unwrap();
        assert_eq!(hits(&issuer), 2, "stale after the configured max age");
    }

    #[tokio::test(start_paused = true)]
    async fn the_response_max_age_shortens_the_cache_but_never_lengthens_it() {
        let issuer = issuer_with(vec![jwk(1, "k1")]);
        *issuer.cache_control.lock().unwrap() = Some("public, max-age=60");
        let c = cache(&issuer);
        c.key("k1").await.unwrap();
        tokio::time::advance(Duration::from_secs(59)).await;
        c.key("k1").await.unwrap();
        assert_eq!(hits(&issuer), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        c.key("k1").await.unwrap();
        assert_eq!(hits(&issuer), 2);

        *issuer.cache_control.lock().unwrap() = Some("max-age=86400");
        tokio::time::advance(Duration::from_secs(61)).await;
        c.key("k1").await.unwrap();
        tokio::time::advance(Duration::from_secs(301)).await;
        c.key("k1").await.unwrap();
        assert_eq!(hits(&issuer), 4, "capped at the configured 300 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rotated_in_key_is_fetched_once_and_unknown_kids_are_rate_limited() {
        let issuer = issuer_with(vec![jwk(1, "k1")]);
        let c = cache(&issuer);
        c.key("k1").await.unwrap();

        issuer.keys.lock().unwrap().push(jwk(2, "k2"));
        assert_eq!(c.key("k2").await.unwrap(), key(2).verifying_key());
        assert_eq!(hits(&issuer), 2);

        for _ in 0..50 {
            assert_eq!(
                c.key("forged").await.unwrap_err(),
                AuthError::InvalidToken("unknown kid")
            );
        }
        assert_eq!(hits(&issuer), 2, "inside the interval: no fetch at all");
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..50 {
            c.key("forged").await.unwrap_err();
        }
        assert_eq!(hits(&issuer), 3, "one fetch per interval");
        c.key("k1").await.unwrap();
        c.key("k2").await.unwrap();
        assert_eq!(hits(&issuer), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_for_one_unknown_kid_share_one_fetch() {
        let issuer = issuer_with(vec![jwk(1, "k1")]);
        let c = cache(&issuer);
        c.key("k1").await.unwrap();
        issuer.keys.lock().unwrap().push(jwk(2, "k2"));
        *issuer.delay.lock().unwrap() = Duration::from_millis(200);

        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let c = c.clone();
            set.spawn(async move { c.key("k2").await });
        }
        for r in set.join_all().await {
            assert_eq!(r.unwrap(), key(2).verifying_key());
        }
        assert_eq!(hits(&issuer), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_issuer_keeps_known_keys_and_is_asked_once_per_interval() {
        let issuer = Arc::new(FakeIssuer::default());
        *issuer.down.lock().unwrap() = true;
        let c = cache(&issuer);
        for _ in 0..10 {
            assert!(matches!(c.key("k1").await, Err(AuthError::Unavailable(_))));
        }
        assert_eq!(hits(&issuer), 1);

        *issuer.down.lock().unwrap() = false;
        *issuer.keys.lock().unwrap() = vec![jwk(1, "k1")];
        tokio::time::advance(Duration::from_secs(10)).await;
        c.key("k1").await.unwrap();
        assert_eq!(hits(&issuer), 2);

        *issuer.down.lock().unwrap() = true;
        tokio::time::advance(Duration::from_secs(301)).await;
        assert_eq!(
            c.key("k1").await.unwrap(),
            key(1).verifying_key(),
            "stale-if-error"
        );
        assert!(
            matches!(c.key("k9").await, Err(AuthError::Unavailable(_))),
            "an unknown kid while the issuer is down may be a good token: 503"
        );
        assert_eq!(hits(&issuer), 3);
    }

    #[test]
    fn jwks_parsing_keeps_ed25519_signature_keys_only() {
        let mut rsa = jwk(1, "rsa");
        rsa["kty"] = "RSA".into();
        let mut enc = jwk(2, "enc");
        enc["use"] = "enc".into();
        let mut no_kid = jwk(3, "x");
        no_kid.as_object_mut().unwrap().remove("kid");
        let body = serde_json::json!({"keys":[rsa, enc, no_kid, jwk(4, "ok")]}).to_string();
        let keys = parse_jwks(body.as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["ok"]);

        let mut short = jwk(5, "bad");
        short["x"] = "AAAA".into();
        let body = serde_json::json!({"keys":[short]}).to_string();
        assert!(parse_jwks(body.as_bytes()).is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }

    #[test]
    fn cache_control_max_age_is_read() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(header::CACHE_CONTROL, v.parse().unwrap());
            cache_max_age(&m)
        };
        assert_eq!(h("public, max-age=300"), Some(Duration::from_secs(300)));
        assert_eq!(h("Max-Age=\"5\""), Some(Duration::from_secs(5)));
        assert_eq!(h("no-store"), Some(Duration::ZERO));
        assert_eq!(h("public"), None);
        assert_eq!(cache_max_age(&HeaderMap::new()), None);
    }
}
