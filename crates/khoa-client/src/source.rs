//! [`TokenSource`]: one token, kept fresh. Its promises:
//!
//! - **Proactive refresh.** A token is refreshed once a fraction of its lifetime has passed
//!   (80 %, less up to 10 % of jitter, so that many processes do not refresh in step). Until
//!   the token is nearly expired the caller gets it at once and the refresh runs beside; the
//!   last stretch (a tenth of the lifetime, at most 5 s) is never handed out, so a 4 s token
//!   is refreshed about every 3 s and is not presented expired.
//! - **Single flight.** However many callers want a token at once, one token call is made;
//!   it runs in a task of its own, so a caller that gives up does not cancel it for the others.
//! - **Rotation kept.** A rotated refresh token replaces the old one (and reaches the
//!   persistent store, when there is one) before anyone is handed the new access token. A
//!   refused refresh falls back to a fresh login when the credentials allow one.
//! - **Invalidation by generation.** A resource's 401 invalidates the token that failed, not
//!   whichever is current: a request that raced a refresh does not throw the new token away.
//! - **Back-off.** A failed token call is not repeated by every caller: they get the error
//!   until the back-off (exponential with jitter, or the answer's `Retry-After`) ends, and
//!   then the source tries again; it never stops for good.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use khoa_dialect::Dialect;
use khoa_dialect::def::{Grant, Operation};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

use crate::Credentials;
use crate::call::{self, Ask, Fetched};
use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::store::{Saved, TokenStore};

/// When a token is refreshed and how failures are retried.
#[derive(Clone, Debug)]
pub struct RefreshPolicy {
    /// The fraction of a token's lifetime after which it is refreshed.
    pub fraction: f64,
    /// Up to this fraction of that moment earlier, at random.
    pub jitter: f64,
    /// The lifetime of a token whose answer does not say.
    pub default_lifetime: Duration,
    /// The end of a token's life that is never handed out: a tenth of it, at most this.
    pub max_guard: Duration,
    /// The first back-off after a failure; it doubles with each failure in a row, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Whether [`TokenSource::send`] sends a request once more, with a new token, after a 401.
    pub retry_unauthorized: bool,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            fraction: 0.8,
            jitter: 0.1,
            default_lifetime: Duration::from_secs(300),
            max_guard: Duration::from_secs(5),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            retry_unauthorized: true,
        }
    }
}

/// An access token as the source hands it out. Its `Debug` does not show the token.
#[derive(Clone)]
pub struct AccessToken {
    value: SecretString,
    token_type: String,
    otp: Option<SecretString>,
    scope: Option<String>,
    generation: u64,
    expires_at_ms: u64,
}

impl AccessToken {
    /// The scope the answer granted, when it says.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The token itself.
    pub fn secret(&self) -> &str {
        self.value.expose_secret()
    }

    /// `Bearer <token>` (the answer's token type, `Bearer` when it names none): the value of
    /// the `Authorization` header.
    pub fn authorization(&self) -> String {
        let scheme = if self.token_type.eq_ignore_ascii_case("bearer") {
            "Bearer"
        } else {
            &self.token_type
        };
        format!("{scheme} {}", self.value.expose_secret())
    }

    /// The token type the answer named (`Bearer` when it named none).
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// The OTP token some dialects answer beside the access token (seed 000's `otp_token`).
    pub fn otp(&self) -> Option<&str> {
        self.otp.as_ref().map(|o| o.expose_secret())
    }

    /// Which token of the source this is; pass it to [`TokenSource::invalidate`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When it expires, in the source's clock (ms since the Unix epoch).
    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token_type", &self.token_type)
            .field("generation", &self.generation)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// What a source has done, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests sent to a token endpoint.
    pub token_calls: u64,
    pub logins: u64,
    pub refreshes: u64,
    /// Token calls that failed.
    pub failures: u64,
    /// Tokens invalidated after a 401.
    pub invalidations: u64,
    /// Requests [`TokenSource::send`] sent once more, with a new token, after a 401.
    pub retries: u64,
}

type OnChange = Arc<dyn Fn(&AccessToken) + Send + Sync>;
type Flight = watch::Receiver<Option<Result<AccessToken, Error>>>;

/// Builds a [`TokenSource`].
pub struct Builder {
    dialect: Arc<Dialect>,
    login: Option<String>,
    refresh: Option<String>,
    token_url: Option<String>,
    base_url: Option<String>,
    creds: Credentials,
    http: Option<reqwest::Client>,
    clock: Arc<dyn Clock>,
    policy: RefreshPolicy,
    store: Option<Arc<dyn TokenStore>>,
    on_change: Option<OnChange>,
}

impl Builder {
    /// Who the source is (which of them the chosen endpoints read is the definition's
    /// business).
    pub fn credentials(mut self, creds: Credentials) -> Self {
        self.creds = creds;
        self
    }

    /// The endpoint that logs in (default: the dialect's first token endpoint that is not a
    /// refresh).
    pub fn login_endpoint(mut self, name: impl Into<String>) -> Self {
        self.login = Some(name.into());
        self
    }

    /// The endpoint that refreshes (default: the dialect's refresh endpoint, else the login
    /// endpoint when it takes any grant; none when the dialect cannot refresh).
    pub fn refresh_endpoint(mut self, name: impl Into<String>) -> Self {
        self.refresh = Some(name.into());
        self
    }

    /// The login endpoint's full URL; the refresh endpoint's is made from it by replacing the
    /// login path at its end.
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    /// The server's base URL: each endpoint is at `base_url` + its path.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    pub fn policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Where the refresh token and the current access token are kept across restarts (and, for
    /// a [`crate::FileStore`], shared by the processes of one host).
    pub fn store(mut self, store: impl TokenStore + 'static) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Called with each new token, after its refresh token has been kept.
    pub fn on_change(mut self, f: impl Fn(&AccessToken) + Send + Sync + 'static) -> Self {
        self.on_change = Some(Arc::new(f));
        self
    }

    /// [`Builder::build`], or the live source built earlier in this process for the same
    /// key — the dialect (name and text), its URLs, the client, scope and principal, and the
    /// secrets — so that every part of a program that builds its own source for one client
    /// shares one token and one token call (single flight per key, not per object). The
    /// first builder's clock, policy, store and callback are the ones in force.
    ///
    /// # Examples
    ///
    /// ```
    /// use khoa_client::{Credentials, TokenSource};
    ///
    /// let build = || {
    ///     TokenSource::built_in("oauth2")
    ///         .unwrap()
    ///         .base_url("https://id.example")
    ///         .credentials(Credentials::client("app", "its-secret"))
    ///         .build_shared()
    ///         .unwrap()
    /// };
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (a, b) = (build(), build());
    /// assert!(a.same_as(&b));
    /// # });
    /// ```
    pub fn build_shared(self) -> Result<TokenSource, Error> {
        use sha2::Digest as _;
        static SHARED: Mutex<Vec<(String, std::sync::Weak<Inner>)>> = Mutex::new(Vec::new());
        let mut secrets = sha2::Sha256::new();
        for s in [
            &self.creds.client_secret,
            &self.creds.password,
            &self.creds.partner_key_hex,
            &self.creds.signing_key,
        ] {
            secrets.update(s.as_ref().map_or("", |s| s.expose_secret()).as_bytes());
            secrets.update([0]);
        }
        let text = hex::encode(sha2::Sha256::digest(self.dialect.text.as_bytes()));
        let source = self.build()?;
        let key = format!(
            "{}|{}|{}|{}|{}",
            text,
            source.inner.key,
            source.inner.login_url,
            source.inner.refresh_url.as_deref().unwrap_or(""),
            hex::encode(secrets.finalize())
        );
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        shared.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(inner) = shared
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(TokenSource { inner });
        }
        shared.push((key, Arc::downgrade(&source.inner)));
        Ok(source)
    }

    pub fn build(self) -> Result<TokenSource, Error> {
        let d = &self.dialect;
        let find = |name: &str| {
            d.endpoints
                .iter()
                .position(|e| e.name == name)
                .ok_or_else(|| {
                    Error::Config(format!("dialect `{}` has no endpoint `{name}`", d.name))
                })
        };
        let is_token = |i: &usize| d.endpoints[*i].operation == Operation::Token;
        let login = match &self.login {
            Some(name) => find(name)?,
            None => (0..d.endpoints.len())
                .filter(is_token)
                .find(|&i| d.endpoints[i].grant != Some(Grant::RefreshToken))
                .ok_or_else(|| {
                    Error::Config(format!("dialect `{}` has no login endpoint", d.name))
                })?,
        };
        let refresh = match &self.refresh {
            Some(name) => Some(find(name)?),
            None => (0..d.endpoints.len())
                .filter(is_token)
                .find(|&i| d.endpoints[i].grant == Some(Grant::RefreshToken))
                .or((d.endpoints[login].grant == Some(Grant::Request)).then_some(login)),
        };
        let url_of = |i: usize| -> Result<String, Error> {
            let path = &d.endpoints[i].path;
            match (&self.token_url, &self.base_url) {
                (Some(url), _) if i == login => Ok(url.clone()),
                (Some(url), _) => {
                    let base = url
                        .strip_suffix(d.endpoints[login].path.as_str())
                        .ok_or_else(|| {
                            Error::Config(format!(
                                "token_url {url} does not end with the login path {}, so the \
                                 refresh URL cannot be made from it: give base_url instead",
                                d.endpoints[login].path
                            ))
                        })?;
                    Ok(format!("{base}{path}"))
                }
                (None, Some(base)) => Ok(format!("{}{path}", base.trim_end_matches('/'))),
                (None, None) => Err(Error::Config(
                    "a token source needs token_url or base_url".into(),
                )),
            }
        };
        let login_url = url_of(login)?;
        let refresh_url = refresh.map(url_of).transpose()?;
        let name = format!(
            "{}/{} client={}",
            d.name,
            d.endpoints[login].name,
            self.creds.client_id.as_deref().unwrap_or("-")
        );
        Ok(TokenSource {
            inner: Arc::new(Inner {
                name,
                key: store_key(d, &self.creds),
                dialect: self.dialect.clone(),
                login,
                refresh,
                login_url,
                refresh_url,
                creds: self.creds,
                http: self.http.unwrap_or_else(crate::default_http_client),
                clock: self.clock,
                policy: self.policy,
                store: self.store,
                on_change: self.on_change,
                state: Mutex::new(State::default()),
            }),
        })
    }
}

/// Replaces every string equal to `secret` in `v`.
fn redact(v: &mut serde_json::Value, secret: &str) {
    match v {
        serde_json::Value::String(s) if s == secret => *s = "[redacted]".into(),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|v| redact(v, secret)),
        serde_json::Value::Object(m) => m.values_mut().for_each(|v| redact(v, secret)),
        _ => {}
    }
}

/// The answer of the token call `flight`, once it has one.
async fn landed(mut flight: Flight) -> Result<AccessToken, Error> {
    let answer = flight
        .wait_for(Option::is_some)
        .await
        .map_err(|_| Error::Unavailable {
            reason: "the token call was dropped".into(),
            retry_after: None,
        })?;
    answer.clone().expect("waited for an answer")
}

/// What the single-flight and the stores key a token by: the dialect, the client, the scope
/// and the principal; never the refresh token, which changes with every rotation.
fn store_key(d: &Dialect, c: &Credentials) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        d.name,
        c.client_id.as_deref().unwrap_or(""),
        c.scope.as_deref().unwrap_or(""),
        c.username.as_deref().unwrap_or(""),
        c.partner_code.as_deref().unwrap_or("")
    )
}

/// One token of one client, kept fresh; cheap to clone (clones share the token).
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), khoa_client::Error> {
/// use khoa_client::{Credentials, TokenSource};
///
/// let source = TokenSource::built_in("bankhub")?
///     .token_url("https://bankhub-api-sandbox.example/v1/token")
///     .credentials(Credentials::client("my-client", "my-secret"))
///     .build()?;
/// let token = source.token().await?;
/// let _header = token.authorization(); // "Bearer …"
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("source", &self.inner.name)
            .finish_non_exhaustive()
    }
}

struct Inner {
    name: String,
    key: String,
    dialect: Arc<Dialect>,
    login: usize,
    refresh: Option<usize>,
    login_url: String,
    refresh_url: Option<String>,
    creds: Credentials,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    policy: RefreshPolicy,
    store: Option<Arc<dyn TokenStore>>,
    on_change: Option<OnChange>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    current: Option<Held>,
    refresh_token: Option<SecretString>,
    generation: u64,
    flight: Option<Flight>,
    failures: u32,
    not_before_ms: u64,
    last_error: Option<Arc<Error>>,
    stats: Stats,
    /// The last token invalidated: a store may still hold it, and it must not come back.
    invalidated: Option<SecretString>,
}

struct Held {
    token: AccessToken,
    refresh_at_ms: u64,
    usable_until_ms: u64,
}

/// Builder entry points.
impl TokenSource {
    /// A source for `dialect`, loaded by the caller (a file, or a built-in with settings).
    pub fn builder(dialect: Arc<Dialect>) -> Builder {
        Builder {
            dialect,
            login: None,
            refresh: None,
            token_url: None,
            base_url: None,
            creds: Credentials::default(),
            http: None,
            clock: Arc::new(SystemClock),
            policy: RefreshPolicy::default(),
            store: None,
            on_change: None,
        }
    }

    /// A source for the built-in dialect `name` with its default settings (`oauth2` for
    /// standard OAuth 2.0).
    pub fn built_in(name: &str) -> Result<Builder, Error> {
        Ok(TokenSource::builder(Arc::new(load_built_in(name)?)))
    }

    /// A source for the definition file at `path` (the format `khoa serve` reads).
    pub fn from_file(path: &std::path::Path) -> Result<Builder, Error> {
        Ok(TokenSource::builder(Arc::new(load_file(path)?)))
    }
}

/// The built-in dialect `name`, with its default settings.
pub fn load_built_in(name: &str) -> Result<Dialect, Error> {
    let text = khoa_dialect::built_in(name).ok_or_else(|| {
        let names: Vec<_> = khoa_dialect::BUILT_IN.iter().map(|(n, _)| *n).collect();
        Error::Config(format!(
            "no built-in dialect `{name}` (built-in: {})",
            names.join(", ")
        ))
    })?;
    khoa_dialect::load(text, khoa_dialect::Origin::BuiltIn, &Default::default())
        .map_err(|e| Error::Config(e.to_string()))
}

/// The definition file at `path`.
pub fn load_file(path: &std::path::Path) -> Result<Dialect, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    khoa_dialect::load(
        &text,
        khoa_dialect::Origin::File(path.to_owned()),
        &Default::default(),
    )
    .map_err(|e| Error::Config(e.to_string()))
}

impl TokenSource {
    /// A token that is fresh now: the current one, or (when there is none, or it is nearly
    /// expired) a new one from the one token call in flight.
    pub async fn token(&self) -> Result<AccessToken, Error> {
        let flight = {
            let mut st = self.inner.lock();
            let now = self.inner.clock.now_ms();
            if let Some(h) = &st.current {
                if now < h.refresh_at_ms {
                    return Ok(h.token.clone());
                }
                if now < h.usable_until_ms {
                    let token = h.token.clone();
                    if now >= st.not_before_ms {
                        self.start_flight(&mut st);
                    }
                    return Ok(token);
                }
            }
            if now < st.not_before_ms
                && let Some(last) = &st.last_error
            {
                return Err(Error::BackingOff {
                    wait: Duration::from_millis(st.not_before_ms - now),
                    last: last.clone(),
                });
            }
            self.start_flight(&mut st)
        };
        landed(flight).await
    }

    /// A new token now, whatever the cache and the store hold (the current one is kept for
    /// the callers of [`TokenSource::token`] until the new one is in).
    pub async fn refresh(&self) -> Result<AccessToken, Error> {
        let flight = {
            let mut st = self.inner.lock();
            self.start_flight_forced(&mut st, true)
        };
        landed(flight).await
    }

    /// Forgets the token of `generation` (a resource refused it), so that the next
    /// [`TokenSource::token`] gets a new one. A newer token is kept: the request that failed
    /// raced a refresh that has already replaced its token.
    pub fn invalidate(&self, generation: u64) {
        let mut st = self.inner.lock();
        if st
            .current
            .as_ref()
            .is_some_and(|h| h.token.generation == generation)
        {
            st.current = None;
            st.stats.invalidations += 1;
            tracing::debug!(source = %self.inner.name, generation, "token invalidated");
        }
    }

    /// Logs in once, whatever the cache holds, and returns the new token with the token
    /// endpoint's whole answer, its refresh token replaced by `"[redacted]"` (for a human:
    /// `khoa token get`). The token becomes the source's current one.
    pub async fn login_answer(&self) -> Result<(AccessToken, serde_json::Value), Error> {
        let started = self.inner.clock.now_ms();
        let fetched = self.inner.call(self.inner.login, Ask::Login).await?;
        let mut answer = fetched.answer.clone();
        if let Some(refresh) = &fetched.refresh_token {
            redact(&mut answer, refresh.expose_secret());
        }
        let token = self.inner.install(fetched, started).await;
        Ok((token, answer))
    }

    pub(crate) fn policy(&self) -> &RefreshPolicy {
        &self.inner.policy
    }

    /// Counts a request sent once more after a 401.
    pub(crate) fn count_retry(&self) {
        self.inner.lock().stats.retries += 1;
    }

    /// Builds the login request without sending it: a credential the dialect needs and the
    /// credentials lack, or a key that does not parse, is found before the first call.
    #[cfg_attr(not(feature = "agent"), allow(dead_code))]
    pub(crate) fn check(&self) -> Result<(), Error> {
        let i = &self.inner;
        let now_secs = (i.clock.now_ms() / 1000) as i64;
        call::prepare(
            &i.dialect.endpoints[i.login],
            &i.creds,
            Ask::Login,
            now_secs,
        )
        .map(drop)
    }

    /// Whether `self` and `other` are one source (clones, or shared by
    /// [`Builder::build_shared`]).
    pub fn same_as(&self, other: &TokenSource) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// What the source has done so far.
    pub fn stats(&self) -> Stats {
        self.inner.lock().stats
    }

    /// Keeps the token fresh in the background: a task that refreshes each token when it is
    /// due, whether or not anyone asks. Callers still call [`TokenSource::token`], which then
    /// rarely waits. The task ends when every clone of the source is dropped.
    pub fn spawn_background(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let clock = self.inner.clock.clone();
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let source = TokenSource { inner };
                let _ = source.token().await;
                let due = {
                    let st = source.inner.lock();
                    st.current
                        .as_ref()
                        .map_or(st.not_before_ms, |h| h.refresh_at_ms.max(st.not_before_ms))
                };
                drop(source);
                clock.sleep_until(due).await;
            }
        })
    }

    /// The one call in flight, or a new one.
    fn start_flight(&self, st: &mut State) -> Flight {
        self.start_flight_forced(st, false)
    }

    /// [`TokenSource::start_flight`]; `force`: a new token even when the store holds a fresh
    /// one (a call already in flight is joined all the same).
    fn start_flight_forced(&self, st: &mut State, force: bool) -> Flight {
        if let Some(f) = &st.flight
            && f.borrow().is_none()
        {
            return f.clone();
        }
        let (tx, rx) = watch::channel(None);
        st.flight = Some(rx.clone());
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let result = inner.fetch(force).await;
            inner.settle(&result);
            tx.send_replace(Some(result));
        });
        rx
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is a few assignments that cannot panic halfway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records how a token call ended: the back-off after a failure, none after a success.
    fn settle(&self, result: &Result<AccessToken, Error>) {
        let mut st = self.lock();
        st.flight = None;
        match result {
            Ok(_) => {
                st.failures = 0;
                st.not_before_ms = 0;
                st.last_error = None;
            }
            // Nothing to wait for: the configuration must change.
            Err(Error::Config(_)) => {}
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                st.stats.failures += 1;
                let wait = match e {
                    Error::Unavailable {
                        retry_after: Some(after),
                        ..
                    } => *after,
                    _ => {
                        let p = &self.policy;
                        let doubled = p
                            .backoff_base
                            .saturating_mul(1 << st.failures.saturating_sub(1).min(16));
                        // "Equal jitter": half fixed, half random, so that failing processes
                        // spread out but none retries at once.
                        doubled
                            .min(p.backoff_max)
                            .mul_f64(0.5 + rand::random::<f64>() / 2.0)
                    }
                };
                st.not_before_ms = self.clock.now_ms() + wait.as_millis() as u64;
                st.last_error = Some(Arc::new(e.clone()));
                tracing::warn!(
                    source = %self.name,
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "token call failed"
                );
            }
        }
    }

    /// The token call: a refresh when there is a refresh token, else a login; the rotated
    /// refresh token kept, then the new access token installed.
    async fn fetch(&self, force: bool) -> Result<AccessToken, Error> {
        let _lock = match &self.store {
            Some(store) => Some(store.lock(&self.key).await?),
            None => None,
        };
        if let Some(store) = &self.store
            && let Some(token) = self.adopt_saved(store.as_ref(), force).await?
        {
            return Ok(token);
        }
        let started = self.clock.now_ms();
        let refresh_token = self.lock().refresh_token.clone();
        let fetched = match (refresh_token, self.refresh) {
            (Some(rt), Some(endpoint)) => {
                match self.call(endpoint, Ask::Refresh(rt.expose_secret())).await {
                    Ok(f) => f,
                    Err(Error::Refused { status, error }) if self.creds.can_log_in() => {
                        tracing::info!(
                            source = %self.name,
                            status,
                            error = error.as_deref().unwrap_or(""),
                            "refresh refused; logging in again"
                        );
                        self.lock().refresh_token = None;
                        self.call(self.login, Ask::Login).await?
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => self.call(self.login, Ask::Login).await?,
        };
        let token = self.install(fetched, started).await;
        if let Some(f) = &self.on_change {
            f(&token);
        }
        Ok(token)
    }

    /// What the store holds, under its lock: its refresh token is the newest of the chain
    /// (every token call saves before it lets go of the lock), so it replaces ours; its access
    /// token is used when another process (or an earlier run) got it and it is not due for
    /// refresh — unless `force`, or it is the very token we have or was refused.
    async fn adopt_saved(
        &self,
        store: &dyn TokenStore,
        force: bool,
    ) -> Result<Option<AccessToken>, Error> {
        let Some(saved) = store.load(&self.key).await? else {
            return Ok(None);
        };
        let now = self.clock.now_ms();
        let mut st = self.lock();
        if let Some(rt) = &saved.refresh_token {
            st.refresh_token = Some(SecretString::from(rt.clone()));
        }
        let ours = st
            .current
            .as_ref()
            .is_some_and(|h| h.token.secret() == saved.access_token);
        let refused = st
            .invalidated
            .as_ref()
            .is_some_and(|t| t.expose_secret() == saved.access_token);
        let (refresh_at, usable_until) = self.times(
            saved.issued_at_ms,
            saved.expires_at_ms.saturating_sub(saved.issued_at_ms),
        );
        if force || ours || refused || now >= refresh_at {
            return Ok(None);
        }
        st.generation += 1;
        let token = AccessToken {
            value: SecretString::from(saved.access_token.clone()),
            token_type: saved.token_type.clone(),
            otp: saved.otp_token.clone().map(SecretString::from),
            scope: saved.scope.clone(),
            generation: st.generation,
            expires_at_ms: saved.expires_at_ms,
        };
        st.current = Some(Held {
            token: token.clone(),
            refresh_at_ms: refresh_at,
            usable_until_ms: usable_until,
        });
        Ok(Some(token))
    }

    async fn call(&self, endpoint: usize, ask: Ask<'_>) -> Result<Fetched, Error> {
        let e = &self.dialect.endpoints[endpoint];
        let url = if endpoint == self.login {
            &self.login_url
        } else {
            self.refresh_url
                .as_ref()
                .expect("a refresh endpoint has a URL")
        };
        let prepared = call::prepare(e, &self.creds, ask, (self.clock.now_ms() / 1000) as i64)?;
        let mut req = self
            .http
            .request(prepared.method, url)
            .headers(prepared.headers);
        if let Some((content_type, body)) = prepared.body {
            req = req
                .header(http::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        {
            let mut st = self.lock();
            st.stats.token_calls += 1;
        }
        let kind = match ask {
            Ask::Login => "login",
            Ask::Refresh(_) => "refresh",
        };
        tracing::debug!(source = %self.name, endpoint = %e.name, kind, "token call");
        let res = req.send().await.map_err(|err| Error::Unavailable {
            // reqwest's message names the URL, never a header or the body.
            reason: err.to_string(),
            retry_after: None,
        })?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.bytes().await.map_err(|err| Error::Unavailable {
            reason: format!("reading the answer: {err}"),
            retry_after: None,
        })?;
        let fetched = call::read_answer(e, status, &headers, &body, self.clock.now_ms())?;
        let mut st = self.lock();
        match ask {
            Ask::Login => st.stats.logins += 1,
            Ask::Refresh(_) => st.stats.refreshes += 1,
        }
        Ok(fetched)
    }

    /// When a token issued at `issued_ms` and living `lifetime_ms` is refreshed, and until
    /// when it is handed out.
    fn times(&self, issued_ms: u64, lifetime_ms: u64) -> (u64, u64) {
        let p = &self.policy;
        let life = lifetime_ms as f64;
        let jitter = 1.0 - p.jitter * rand::random::<f64>();
        let refresh_at = issued_ms + (life * p.fraction * jitter) as u64;
        let guard = (life * (1.0 - p.fraction) / 2.0).min(p.max_guard.as_millis() as f64);
        let usable_until = issued_ms + (life - guard).max(0.0) as u64;
        (refresh_at.min(usable_until), usable_until)
    }

    /// Keeps the refresh token (in the store first), then makes the new token current.
    async fn install(&self, f: Fetched, started_ms: u64) -> AccessToken {
        let lifetime = f
            .lifetime_ms
            .unwrap_or(self.policy.default_lifetime.as_millis() as u64);
        // A token answered without a refresh token leaves the one we have (RFC 6749 §6).
        let refresh = f
            .refresh_token
            .clone()
            .or_else(|| self.lock().refresh_token.clone());
        let expires_at = started_ms + lifetime;
        if let Some(store) = &self.store {
            let saved = Saved {
                access_token: f.access_token.expose_secret().to_owned(),
                token_type: f.token_type.clone(),
                otp_token: f.otp_token.as_ref().map(|o| o.expose_secret().to_owned()),
                refresh_token: refresh.as_ref().map(|r| r.expose_secret().to_owned()),
                scope: f.scope.clone(),
                issued_at_ms: started_ms,
                expires_at_ms: expires_at,
            };
            if let Err(e) = store.save(&self.key, &saved).await {
                // The token is good; only a restart would lose the rotated refresh token.
                tracing::warn!(source = %self.name, error = %e, "saving the token failed");
            }
        }
        let (refresh_at, usable_until) = self.times(started_ms, lifetime);
        let mut st = self.lock();
        st.refresh_token = refresh;
        st.generation += 1;
        let token = AccessToken {
            value: f.access_token,
            token_type: f.token_type,
            otp: f.otp_token,
            scope: f.scope,
            generation: st.generation,
            expires_at_ms: expires_at,
        };
        st.current = Some(Held {
            token: token.clone(),
            refresh_at_ms: refresh_at,
            usable_until_ms: usable_until,
        });
        token
    }
}
