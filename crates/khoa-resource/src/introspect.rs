//! Opaque tokens: RFC 7662 token introspection, with a short memory of positive answers.
//!
//! An opaque token says nothing by itself, so the issuer is asked: `POST` the token with
//! `token_type_hint=access_token`, authenticated as a confidential client with HTTP Basic
//! (RFC 7662 §2.1, RFC 6749 §2.3.1). Only `"active": true` passes.
//!
//! Positive answers are remembered for at most `cache_ttl` (and never past the token's `exp`),
//! keyed by the token's SHA-256 so that no token sits in memory in the clear. That bounds
//! how long a revoked token keeps working here; set the TTL to zero to ask every time.
//! Refusals and failures are never remembered: the next request asks again.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use crate::claims::{Claims, Scopes, TokenSource};
use crate::error::AuthError;
use crate::fetch::Fetcher;
use crate::jwt::{Audience, Expectations, check_times};
use crate::stats::Counters;

/// Most positive answers remembered; past that, expired entries go, then everything.
const CACHE_MAX: usize = 10_000;

/// `application/x-www-form-urlencoded` keeps alphanumerics and `-._*` (WHATWG URL spec).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'*');

pub(crate) struct IntrospectionSettings {
    pub(crate) url: Uri,
    pub(crate) client_id: String,
    pub(crate) client_secret: SecretString,
    pub(crate) timeout: Duration,
    pub(crate) cache_ttl: Duration,
}

pub(crate) struct Introspector {
    s: IntrospectionSettings,
    fetcher: Arc<dyn Fetcher>,
    cache: Mutex<HashMap<[u8; 32], (Claims, Instant)>>,
    counters: Arc<Counters>,
}

/// RFC 7662 §2.2, as far as it is read here; every member is kept in [`Claims::raw`].
#[derive(Deserialize)]
struct IntrospectionResponse {
    active: bool,
    scope: Option<String>,
    client_id: Option<String>,
    sub: Option<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    token_type: Option<String>,
    /// Which kind of token this is, as Ory Hydra and khoa spell it.
    token_use: Option<String>,
    aud: Option<Audience>,
    iss: Option<String>,
    jti: Option<String>,
    sid: Option<String>,
}

impl Introspector {
    pub(crate) fn new(
        s: IntrospectionSettings,
        fetcher: Arc<dyn Fetcher>,
        counters: Arc<Counters>,
    ) -> Self {
        Introspector {
            s,
            fetcher,
            cache: Mutex::new(HashMap::new()),
            counters,
        }
    }

    pub(crate) async fn introspect(
        &self,
        token: &str,
        e: &Expectations<'_>,
    ) -> Result<Claims, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.cached(&digest) {
            self.counters.introspection_cache_hit();
            return Ok(claims);
        }
        self.counters.introspection();
        let raw = self.ask(token).await?;
        let claims = validate(raw, e)?;
        self.remember(digest, &claims, e.now);
        Ok(claims)
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Claims> {
        let cache = self.cache.lock().expect("introspection cache poisoned");
        let (claims, until) = cache.get(digest)?;
        (Instant::now() < *until).then(|| claims.clone())
    }

    fn remember(&self, digest: [u8; 32], claims: &Claims, now_unix: i64) {
        let remaining = u64::try_from(claims.exp.saturating_sub(now_unix)).unwrap_or(0);
        let ttl = self.s.cache_ttl.min(Duration::from_secs(remaining));
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = self.cache.lock().expect("introspection cache poisoned");
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(digest, (claims.clone(), now + ttl));
    }

    /// The issuer's answer as JSON; anything but a readable 200 is "unavailable" (a 401 here
    /// means *our* client credentials are wrong, which the caller's token cannot help).
    async fn ask(&self, token: &str) -> Result<serde_json::Value, AuthError> {
        let body = format!(
            "token={}&token_type_hint=access_token",
            utf8_percent_encode(token, FORM)
        );
        let authorization = basic_authorization(&self.s.client_id, &self.s.client_secret)
            .map_err(|_| AuthError::Unavailable("unencodable introspection credentials".into()))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.s.url.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, authorization)
            .body(Bytes::from(body))
            .map_err(|e| AuthError::Unavailable(format!("bad introspection request: {e}")))?;
        let unavailable = |detail: String| {
            tracing::warn!(url = %self.s.url, %detail, "token introspection failed");
            AuthError::Unavailable(detail)
        };
        let res = tokio::time::timeout(self.s.timeout, self.fetcher.fetch(request))
            .await
            .map_err(|_| {
                unavailable(format!(
                    "no introspection response within {:?}",
                    self.s.timeout
                ))
            })?
            .map_err(|e| unavailable(e.to_string()))?;
        match res.status() {
            StatusCode::OK => serde_json::from_slice(res.body())
                .map_err(|e| unavailable(format!("unreadable introspection response: {e}"))),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(unavailable(format!(
                "introspection refused our client credentials ({})",
                res.status()
            ))),
            other => Err(unavailable(format!("introspection answered {other}"))),
        }
    }
}

/// `Authorization: Basic` for a confidential client (RFC 6749 §2.3.1: id and secret
/// form-encoded first), marked sensitive so that no HTTP layer logs it.
pub(crate) fn basic_authorization(
    client_id: &str,
    secret: &SecretString,
) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let credentials = format!(
        "{}:{}",
        utf8_percent_encode(client_id, FORM),
        utf8_percent_encode(secret.expose_secret(), FORM)
    );
    let mut value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(credentials)))?;
    value.set_sensitive(true);
    Ok(value)
}

/// RFC 7662 §2.2: `active` decides; what the response says of issuer, audience, lifetime and
/// token type must also fit (a refresh token is never a bearer credential).
fn validate(raw: serde_json::Value, e: &Expectations<'_>) -> Result<Claims, AuthError> {
    let invalid = AuthError::InvalidToken;
    let r: IntrospectionResponse = serde_json::from_value(raw.clone())
        .map_err(|_| AuthError::Unavailable("malformed introspection response".into()))?;
    if !r.active {
        return Err(invalid("inactive"));
    }
    if r.iss.as_deref().is_some_and(|iss| iss != e.issuer) {
        return Err(invalid("wrong issuer"));
    }
    if r.aud.as_ref().is_some_and(|aud| !aud.contains(e.audience)) {
        return Err(invalid("wrong audience"));
    }
    let is_refresh =
        |t: &str| t == "refresh_token" || t == "urn:ietf:params:oauth:token-type:refresh_token";
    if r.token_type.as_deref().is_some_and(is_refresh)
        || r.token_use.as_deref().is_some_and(is_refresh)
    {
        return Err(invalid("a refresh token"));
    }
    let exp = r.exp.ok_or(invalid("introspection gave no exp"))?;
    check_times(exp, r.nbf, r.iat, e)?;
    let client_id = r
        .client_id
        .ok_or(invalid("introspection gave no client_id"))?;
    Ok(Claims {
        sub: r.sub.unwrap_or_else(|| client_id.clone()),
        client_id,
        scope: Scopes::parse(r.scope.as_deref().unwrap_or_default()),
        exp,
        iat: r.iat,
        jti: r.jti,
        sid: r.sid,
        source: TokenSource::Introspection,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::{BoxFuture, FetchError};
    use http::Response;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const NOW: i64 = 1_700_000_000;

    fn expect() -> Expectations<'static> {
        Expectations {
            issuer: "https://khoa.test",
            audience: "api",
            leeway: 10,
            now: NOW,
        }
    }

    #[test]
    fn only_an_active_access_token_for_us_passes() {
        let ok = json!({"active": true, "scope": "read", "client_id": "app", "sub": "usr_1",
            "exp": NOW + 60, "iat": NOW, "token_type": "Bearer", "aud": "api",
            "iss": "https://khoa.test"});
        let c = validate(ok.clone(), &expect()).unwrap();
        assert_eq!((c.sub.as_str(), c.client_id.as_str()), ("usr_1", "app"));
        assert_eq!(c.source, TokenSource::Introspection);
        let with = |k: &str, v: serde_json::Value| {
            let mut r = ok.clone();
            r[k] = v;
            validate(r, &expect())
        };
        assert_eq!(
            with("active", json!(false)).unwrap_err(),
            AuthError::InvalidToken("inactive")
        );
        assert!(with("iss", json!("https://evil")).is_err());
        assert!(with("aud", json!("other")).is_err());
        assert!(with("aud", json!(["other", "api"])).is_ok());
        assert!(with("exp", json!(NOW - 60)).is_err());
        assert!(with("token_type", json!("refresh_token")).is_err());
        assert!(with("token_use", json!("refresh_token")).is_err());
        assert!(with("token_use", json!("access_token")).is_ok());
        assert!(validate(json!({"active": false}), &expect()).is_err());
        let mut no_sub = ok.clone();
        no_sub.as_object_mut().unwrap().remove("sub");
        assert_eq!(validate(no_sub, &expect()).unwrap().sub, "app");
    }

    /// Answers every introspection with `answer`, counting requests and checking their shape.
    struct FakeIntrospection {
        answer: Mutex<(StatusCode, serde_json::Value)>,
        hits: AtomicUsize,
    }

    impl Fetcher for Arc<FakeIntrospection> {
        fn fetch(&self, req: Request<Bytes>) -> BoxFuture<'_, Result<Response<Bytes>, FetchError>> {
            Box::pin(async move {
                self.hits.fetch_add(1, Ordering::SeqCst);
                assert_eq!(req.method(), Method::POST);
                let auth = req.headers()[header::AUTHORIZATION].clone();
                assert!(auth.is_sensitive());
                // "rs:s3cret&=" form-encoded, then Basic (RFC 6749 §2.3.1).
                assert_eq!(
                    auth,
                    format!("Basic {}", STANDARD.encode("rs:s3cret%26%3D")).as_str()
                );
                assert_eq!(
                    req.body().as_ref(),
                    b"token=opaque%2Btoken&token_type_hint=access_token"
                );
                let (status, body) = self.answer.lock().unwrap().clone();
                Ok(Response::builder()
                    .status(status)
                    .body(Bytes::from(body.to_string()))
                    .unwrap())
            })
        }
    }

    fn introspector(
        ttl: u64,
        answer: (StatusCode, serde_json::Value),
    ) -> (Introspector, Arc<FakeIntrospection>) {
        let fake = Arc::new(FakeIntrospection {
            answer: Mutex::new(answer),
            hits: AtomicUsize::new(0),
        });
        let i = Introspector::new(
            IntrospectionSettings {
                url: Uri::from_static("http://khoa.test/connect/introspect"),
                client_id: "rs".into(),
                client_secret: SecretString::from("s3cret&="),
                timeout: Duration::from_secs(5),
                cache_ttl: Duration::from_secs(ttl),
            },
            Arc::new(fake.clone()),
            Arc::new(Counters::default()),
        );
        (i, fake)
    }

    fn active(exp: i64) -> serde_json::Value {
        json!({"active": true, "client_id": "app", "exp": exp, "scope": "read"})
    }

    #[tokio::test(start_paused = true)]
    async fn positive_answers_are_remembered_briefly_and_never_past_exp() {
        let (i, fake) = introspector(30, (StatusCode::OK, active(NOW + 3600)));
        i.introspect("opaque+token", &expect()).await.unwrap();
        i.introspect("opaque+token", &expect()).await.unwrap();
        assert_eq!(fake.hits.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(31)).await;
        i.introspect("opaque+token", &expect()).await.unwrap();
        assert_eq!(fake.hits.load(Ordering::SeqCst), 2, "30 s at most");

        let (i, fake) = introspector(30, (StatusCode::OK, active(NOW + 5)));
        i.introspect("opaque+token", &expect()).await.unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        i.introspect("opaque+token", &expect()).await.unwrap();
        assert_eq!(
            fake.hits.load(Ordering::SeqCst),
            2,
            "never past the token's own exp"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_and_failures_are_never_remembered() {
        let (i, fake) = introspector(30, (StatusCode::OK, json!({"active": false})));
        for _ in 0..3 {
            assert!(matches!(
                i.introspect("opaque+token", &expect()).await,
                Err(AuthError::InvalidToken(_))
            ));
        }
        *fake.answer.lock().unwrap() = (StatusCode::INTERNAL_SERVER_ERROR, json!({}));
        assert!(matches!(
            i.introspect("opaque+token", &expect()).await,
            Err(AuthError::Unavailable(_))
        ));
        *fake.answer.lock().unwrap() =
            (StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
        assert!(matches!(
            i.introspect("opaque+token", &expect()).await,
            Err(AuthError::Unavailable(_))
        ));
        *fake.answer.lock().unwrap() = (StatusCode::OK, active(NOW + 60));
        i.introspect("opaque+token", &expect()).await.unwrap();
        assert_eq!(fake.hits.load(Ordering::SeqCst), 6);
    }
}
