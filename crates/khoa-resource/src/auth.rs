//! [`KhoaAuth`]: the configured validator every layer and extractor shares, and its builder.

use http::{HeaderMap, Uri, header};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::claims::{Claims, Scopes};
use crate::error::AuthError;
use crate::fetch::{Fetcher, HyperFetcher};
use crate::introspect::{IntrospectionSettings, Introspector};
use crate::jwks::{JwksCache, JwksSettings};
use crate::jwt::{self, Expectations};
use crate::layer::KhoaAuthLayer;
use crate::revocation::{RevocationList, RevocationSettings};
use crate::stats::{Counters, Stats};

/// A configuration the builder refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{what} must be an absolute http(s) URL, got {url:?}")]
    InvalidUrl { what: &'static str, url: String },
    #[error("the audience must not be empty")]
    EmptyAudience,
}

/// Validates khoa access tokens. Cheap to clone (one `Arc`); build it once and share it between
/// the layer, extractors and anything else that checks tokens, so that they share one JWKS
/// cache and one introspection cache.
#[derive(Clone)]
pub struct KhoaAuth {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    audience: String,
    leeway: i64,
    required: Scopes,
    jwks: JwksCache,
    introspector: Option<Introspector>,
    revocations: Option<RevocationList>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for KhoaAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KhoaAuth")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("introspection", &self.inner.introspector.is_some())
            .field("revocation_list", &self.inner.revocations.is_some())
            .finish_non_exhaustive()
    }
}

impl KhoaAuth {
    /// Starts a configuration for tokens issued by `issuer` (khoa's `iss`, e.g.
    /// `https://auth.example.com`) for `audience` (khoa's `audience` setting, `khoa` by default).
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> KhoaAuthBuilder {
        KhoaAuthBuilder {
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            audience: audience.into(),
            jwks_url: None,
            introspection_url: None,
            introspection_client: None,
            jwks_max_age: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(10),
            leeway: Duration::from_secs(10),
            http_timeout: Duration::from_secs(5),
            introspection_cache_ttl: Duration::from_secs(30),
            revocation_list_url: None,
            revocation_list: true,
            revocation_poll_interval: Duration::from_secs(5),
            revocation_max_staleness: None,
            required_scopes: Scopes::default(),
            fetcher: None,
        }
    }

    /// The tower layer that authenticates every request it wraps.
    pub fn layer(&self) -> KhoaAuthLayer {
        KhoaAuthLayer::new(self.clone())
    }

    /// Validates one token: a JWT offline against the JWKS (fetching it when needed) and, when
    /// an introspection client is configured, against khoa's JWT revocation list (polling it
    /// when due); anything else by introspection when that is configured. Required scopes are
    /// not checked here.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let i = &self.inner;
        if jwt::looks_like_jwt(token) {
            let parsed = jwt::parse(token)?;
            let key = i.jwks.key(&parsed.kid).await?;
            let e = self.expectations();
            let claims = parsed.verify(&key, &e)?;
            // Only after the signature: a forged token never costs a poll.
            if let (Some(list), Some(jti)) = (&i.revocations, &claims.jti) {
                list.check(jti, e.now).await?;
            }
            Ok(claims)
        } else if let Some(introspector) = &i.introspector {
            introspector.introspect(token, &self.expectations()).await
        } else {
            Err(AuthError::InvalidToken(
                "an opaque token and no introspection configured",
            ))
        }
    }

    /// The whole check the layer does: the `Authorization: Bearer` header (RFC 6750 §2.1),
    /// [`KhoaAuth::verify`], and the scopes every request must carry.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Claims, AuthError> {
        let token = bearer_token(headers)?;
        let claims = self.verify(token).await?;
        require(&claims, &self.inner.required)?;
        Ok(claims)
    }

    /// Fetches the JWKS now rather than on the first request; fails if the issuer is down.
    pub async fn prefetch_jwks(&self) -> Result<(), AuthError> {
        self.inner.jwks.prefetch().await
    }

    /// Polls khoa's JWT revocation list now if it is due (always, before the first poll),
    /// rather than on the first JWT; fails if it cannot be fetched and the list held is too
    /// stale. Does nothing when the list is not polled (no introspection client, or
    /// [`KhoaAuthBuilder::revocation_list`]`(false)`).
    pub async fn prefetch_revocation_list(&self) -> Result<(), AuthError> {
        match &self.inner.revocations {
            Some(list) => list.refresh_if_due(now_unix()).await,
            None => Ok(()),
        }
    }

    /// Whether this validator polls khoa's JWT revocation list (and so refuses revoked JWTs).
    pub fn polls_revocation_list(&self) -> bool {
        self.inner.revocations.is_some()
    }

    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    fn expectations(&self) -> Expectations<'_> {
        Expectations {
            issuer: &self.inner.issuer,
            audience: &self.inner.audience,
            leeway: self.inner.leeway,
            now: now_unix(),
        }
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `insufficient_scope` unless `claims` carries every scope of `required`.
pub(crate) fn require(claims: &Claims, required: &Scopes) -> Result<(), AuthError> {
    if claims.has_scopes(required) {
        Ok(())
    } else {
        Err(AuthError::InsufficientScope {
            required: required.clone(),
        })
    }
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1). Another scheme counts as no
/// bearer credentials at all (§3.1: challenge without an error code).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::Missing);
    };
    if values.next().is_some() {
        return Err(AuthError::InvalidRequest(
            "more than one Authorization header",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidRequest("non-ASCII Authorization header"))?
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let token = rest.trim();
    // b64token, plus the `|` of khoa's `ACCOUNT||KEYID||…` tokens (seed 000).
    let ok = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=|".contains(&b));
    if ok {
        Ok(token)
    } else {
        Err(AuthError::InvalidToken("malformed bearer token"))
    }
}

/// Builds a [`KhoaAuth`]; every setting but issuer and audience has a default.
pub struct KhoaAuthBuilder {
    issuer: String,
    audience: String,
    jwks_url: Option<String>,
    introspection_url: Option<String>,
    introspection_client: Option<(String, SecretString)>,
    jwks_max_age: Duration,
    min_refetch_interval: Duration,
    leeway: Duration,
    http_timeout: Duration,
    introspection_cache_ttl: Duration,
    revocation_list_url: Option<String>,
    revocation_list: bool,
    revocation_poll_interval: Duration,
    revocation_max_staleness: Option<Duration>,
    required_scopes: Scopes,
    fetcher: Option<Arc<dyn Fetcher>>,
}

impl KhoaAuthBuilder {
    /// Where the keys are; default `{issuer}/.well-known/jwks.json`.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// Longest a fetched JWKS is trusted without asking again (default 300 s). A shorter
    /// `Cache-Control: max-age` on the response wins.
    pub fn jwks_max_age(mut self, age: Duration) -> Self {
        self.jwks_max_age = age;
        self
    }

    /// Least time between two JWKS fetches triggered by unknown `kid`s or by a stale cache
    /// (default 10 s): the bound on what forged tokens can make the issuer do.
    pub fn min_jwks_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// Validates opaque tokens by RFC 7662 introspection, authenticating as this confidential
    /// client. Without it, opaque tokens are refused.
    ///
    /// The same client also reads khoa's JWT revocation list (see
    /// [`KhoaAuthBuilder::revocation_list`]): with it, a JWT revoked at khoa is refused here
    /// within about [`KhoaAuthBuilder::revocation_poll_interval`]; without it, a revoked JWT
    /// passes until its `exp`.
    pub fn introspection_client(
        mut self,
        client_id: impl Into<String>,
        secret: SecretString,
    ) -> Self {
        self.introspection_client = Some((client_id.into(), secret));
        self
    }

    /// The introspection endpoint; default `{issuer}/connect/introspect`.
    pub fn introspection_url(mut self, url: impl Into<String>) -> Self {
        self.introspection_url = Some(url.into());
        self
    }

    /// How long a positive introspection answer is reused (default 30 s, never past the token's
    /// `exp`): also how long a revoked opaque token can still pass here. Zero asks every time.
    pub fn introspection_cache_ttl(mut self, ttl: Duration) -> Self {
        self.introspection_cache_ttl = ttl;
        self
    }

    /// Whether to poll khoa's JWT revocation list (default `true`; only ever done with an
    /// [`KhoaAuthBuilder::introspection_client`], whose credentials it uses). With `false`, a
    /// JWT revoked at khoa passes here until its `exp`.
    pub fn revocation_list(mut self, poll: bool) -> Self {
        self.revocation_list = poll;
        self
    }

    /// khoa's JWT revocation list; default `{issuer}/connect/revoked-jwts` (discovery's
    /// `khoa_revocation_list_endpoint`).
    pub fn revocation_list_url(mut self, url: impl Into<String>) -> Self {
        self.revocation_list_url = Some(url.into());
        self
    }

    /// How old the revocation list may get before a request polls it again (default 5 s, at
    /// least 100 ms): about how long a JWT revoked at khoa can still pass here. Polls happen on
    /// the request path, one at a time, so an idle service does not poll at all.
    pub fn revocation_poll_interval(mut self, interval: Duration) -> Self {
        self.revocation_poll_interval = interval;
        self
    }

    /// How long the layer keeps using the last revocation list while khoa cannot be polled
    /// (default 10 × the poll interval, at least 60 s; never less than the interval). Past it,
    /// every JWT is answered 503 — fail closed, since a token revoked meanwhile would pass.
    pub fn revocation_max_staleness(mut self, max: Duration) -> Self {
        self.revocation_max_staleness = Some(max);
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 10 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Timeout of one JWKS or introspection request (default 5 s).
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// Scopes every request through the layer must carry (403 `insufficient_scope` otherwise).
    /// For per-route scopes use [`crate::RequireScopes`].
    pub fn required_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.required_scopes = scopes.into_iter().collect();
        self
    }

    /// The HTTP client (default [`HyperFetcher::new`], plain HTTP): how TLS is plugged in.
    pub fn fetcher(mut self, fetcher: impl Fetcher) -> Self {
        self.fetcher = Some(Arc::new(fetcher));
        self
    }

    pub fn build(self) -> Result<KhoaAuth, ConfigError> {
        if self.audience.is_empty() {
            return Err(ConfigError::EmptyAudience);
        }
        parse_url("issuer", &self.issuer)?;
        let jwks_url = parse_url(
            "jwks_url",
            &self
                .jwks_url
                .unwrap_or_else(|| format!("{}/.well-known/jwks.json", self.issuer)),
        )?;
        let introspection_url = parse_url(
            "introspection_url",
            &self
                .introspection_url
                .unwrap_or_else(|| format!("{}/connect/introspect", self.issuer)),
        )?;
        let revocation_list_url = parse_url(
            "revocation_list_url",
            &self
                .revocation_list_url
                .unwrap_or_else(|| format!("{}/connect/revoked-jwts", self.issuer)),
        )?;
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        let fetcher = self
            .fetcher
            .unwrap_or_else(|| Arc::new(HyperFetcher::new()));
        let counters = Arc::new(Counters::default());
        let jwks = JwksCache::new(
            JwksSettings {
                url: jwks_url,
                timeout: self.http_timeout,
                max_age: self.jwks_max_age,
                min_refetch_interval: self.min_refetch_interval,
            },
            fetcher.clone(),
            counters.clone(),
        );
        let interval = self
            .revocation_poll_interval
            .max(Duration::from_millis(100));
        let max_staleness = self
            .revocation_max_staleness
            .unwrap_or_else(|| (interval * 10).max(Duration::from_secs(60)))
            .max(interval);
        let revocations = self
            .introspection_client
            .as_ref()
            .filter(|_| self.revocation_list)
            .map(|(client_id, client_secret)| {
                RevocationList::new(
                    RevocationSettings {
                        url: revocation_list_url,
                        client_id: client_id.clone(),
                        client_secret: client_secret.clone(),
                        timeout: self.http_timeout,
                        interval,
                        max_staleness,
                        leeway,
                    },
                    fetcher.clone(),
                    counters.clone(),
                )
            });
        let introspector = self.introspection_client.map(|(client_id, client_secret)| {
            Introspector::new(
                IntrospectionSettings {
                    url: introspection_url,
                    client_id,
                    client_secret,
                    timeout: self.http_timeout,
                    cache_ttl: self.introspection_cache_ttl,
                },
                fetcher,
                counters.clone(),
            )
        });
        Ok(KhoaAuth {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                audience: self.audience,
                leeway,
                required: self.required_scopes,
                jwks,
                introspector,
                revocations,
                counters,
            }),
        })
    }
}

fn parse_url(what: &'static str, url: &str) -> Result<Uri, ConfigError> {
    let bad = || ConfigError::InvalidUrl {
        what,
        url: url.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.authority().is_none() {
        return Err(bad());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_bearer_token_is_read_as_rfc_6750_says() {
        assert_eq!(
            bearer_token(&headers(&["Bearer abc.def-_~+/="])),
            Ok("abc.def-_~+/=")
        );
        assert_eq!(bearer_token(&headers(&["bearer  a||b||c "])), Ok("a||b||c"));
        assert_eq!(bearer_token(&headers(&[])), Err(AuthError::Missing));
        assert_eq!(
            bearer_token(&headers(&["Basic dXNlcjpwdw=="])),
            Err(AuthError::Missing)
        );
        assert!(matches!(
            bearer_token(&headers(&["Bearer"])),
            Err(AuthError::InvalidToken(_))
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearer a b"])),
            Err(AuthError::InvalidToken(_))
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(AuthError::InvalidRequest(_))
        ));
    }

    #[test]
    fn urls_default_from_the_issuer_and_bad_ones_are_refused() {
        let auth = KhoaAuth::builder("https://auth.example.com/", "api")
            .build()
            .unwrap();
        assert_eq!(auth.issuer(), "https://auth.example.com");
        assert!(
            KhoaAuth::builder("auth.example.com", "api")
                .build()
                .is_err()
        );
        assert!(KhoaAuth::builder("https://a.test", "").build().is_err());
        assert!(
            KhoaAuth::builder("https://a.test", "api")
                .jwks_url("ftp://a.test/jwks")
                .build()
                .is_err()
        );
    }
}
