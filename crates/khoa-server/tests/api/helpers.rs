//! `spawn_app()`: the real server on port 0 over a fresh SQLite database in a temporary
//! directory, with typed request helpers and seeding helpers (zero2prod `tests/api/helpers.rs`).
//!
//! Argon2 is made cheap here, and only here, through the explicit `password_hash` config.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use khoa_core::clock::AdvancedClock;
use khoa_core::engine::Engine;
use khoa_core::model::{Client, GrantType, TokenPolicy, User};
use khoa_core::scope::ScopeSet;
use khoa_server::config::{Config, PasswordHashConfig};
use khoa_server::startup::{App, Seam};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
pub const TOKEN_PATH: &str = "/connect/token";
pub const PROTECTED_PATH: &str = "/api/protected-resource";
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// `application/x-www-form-urlencoded` keeps alphanumerics and `-._*` (WHATWG URL spec).
const FORM_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'*');

pub fn form_encode(s: &str) -> String {
    utf8_percent_encode(s, FORM_SET).to_string()
}

pub fn form_body(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 6749 §2.3.1: id and secret are form-encoded before the Basic encoding.
pub fn basic_auth(id: &str, secret: &str) -> String {
    let pair = format!("{}:{}", form_encode(id), form_encode(secret));
    format!("Basic {}", STANDARD.encode(pair))
}

/// The JOSE header of a JWT, decoded by hand (no JWT library in the tests).
pub fn jwt_header(token: &str) -> Value {
    let first = token.split('.').next().expect("a JWT has a header");
    let bytes = URL_SAFE_NO_PAD
        .decode(first)
        .expect("the JWT header is base64url");
    serde_json::from_slice(&bytes).expect("the JWT header is JSON")
}

/// The claims of a JWT, decoded by hand without checking the signature.
pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .expect("the JWT payload is base64url");
    serde_json::from_slice(&bytes).expect("the JWT payload is JSON")
}

pub fn is_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty())
}

/// The configuration every test app starts from: port 0, a database and master key in `dir`,
/// and a deliberately cheap Argon2.
pub fn test_config(dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        database_url: format!("sqlite://{}", dir.join("khoa.db").display()),
        master_key: None,
        master_key_file: Some(dir.join("master.key")),
        password_hash: PasswordHashConfig {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 0,
            max_queue: 0,
        },
        ..Config::default()
    }
}

/// A reqwest client builder. reqwest speaks TLS through rustls without a crypto provider of
/// its own here (khoa-client's `agent` feature, unified into every build of the workspace), and
/// would panic building a client before ring is installed: every test client is made here.
pub fn http_builder() -> reqwest::ClientBuilder {
    khoa_client::install_crypto_provider();
    reqwest::Client::builder()
}

/// A reqwest client with the defaults, made through [`http_builder`].
pub fn http_client() -> reqwest::Client {
    http_builder().build().expect("reqwest client")
}

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    pub engine: Arc<Engine>,
    pub dir: TempDir,
    pub config: Config,
    pub client: reqwest::Client,
    /// The server's clock: the wall clock, moved forward by [`TestApp::advance`].
    pub clock: Arc<AdvancedClock>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

/// An app that was stopped: its directory (database, master key), config and clock, ready to
/// be started again.
pub struct StoppedApp {
    pub dir: TempDir,
    pub config: Config,
    clock: Arc<AdvancedClock>,
}

impl TestApp {
    /// The server's database as another process sees it, for the few tests that must change
    /// a row no verb changes (a session revoked behind the engine's back).
    pub async fn database(&self) -> khoa_core::store::Stores {
        khoa_store::connect(
            &self.config.database_url,
            &khoa_store::StoreOptions::default(),
        )
        .await
        .expect("the test database opens")
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = test_config(dir.path());
    tweak(&mut config);
    start(dir, config).await
}

/// Starts an app in an existing directory (e.g. a database the CLI prepared).
pub async fn spawn_app_in(dir: TempDir) -> TestApp {
    let config = test_config(dir.path());
    start(dir, config).await
}

async fn start(dir: TempDir, config: Config) -> TestApp {
    start_on(dir, config, Arc::new(AdvancedClock::new())).await
}

async fn start_on(dir: TempDir, config: Config, clock: Arc<AdvancedClock>) -> TestApp {
    config.validate().expect("the test configuration is valid");
    let seam = Seam {
        clock: clock.clone(),
        ..Seam::default()
    };
    let app = App::build_with(config.clone(), seam)
        .await
        .expect("the app builds");
    let address = format!("http://{}", app.local_addr());
    let engine = app.state().engine.clone();
    let (shutdown, rx) = oneshot::channel::<()>();
    // Dropping the sender (a test that ends without `stop`) also shuts the server down.
    let server = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    TestApp {
        address,
        engine,
        dir,
        config,
        client: http_builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client"),
        clock,
        shutdown,
        server,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn issuer(&self) -> String {
        self.engine.config().issuer.clone()
    }

    /// Moves the server's clock `secs` forward: what a test does instead of sleeping until a
    /// token expires, a window closes or a lock passes.
    pub fn advance(&self, secs: i64) {
        self.clock.advance(secs);
    }

    /// Graceful shutdown: signal, wait for the server task to drain, release the database.
    pub async fn stop(self) -> StoppedApp {
        let TestApp {
            engine,
            dir,
            mut config,
            client,
            clock,
            shutdown,
            server,
            ..
        } = self;
        // Keep the issuer across the restart, as a deployment with a fixed address or an
        // explicit `issuer` does: with port 0 the default issuer would change with the port.
        config.issuer = Some(engine.config().issuer.clone());
        drop(client);
        let _ = shutdown.send(());
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server shuts down within 10 s")
            .expect("the server task does not panic")
            .expect("the server ends without an I/O error");
        drop(engine);
        StoppedApp { dir, config, clock }
    }

    // ---- requests ----

    /// `POST /connect/token` with a form body and no client authentication header.
    pub async fn token(&self, form: &[(&str, &str)]) -> Response {
        self.token_raw(Some(FORM_CONTENT_TYPE), form_body(form).into_bytes(), None)
            .await
    }

    /// `POST /connect/token` authenticated with `client_secret_basic`.
    pub async fn token_basic(&self, id: &str, secret: &str, form: &[(&str, &str)]) -> Response {
        self.token_raw(
            Some(FORM_CONTENT_TYPE),
            form_body(form).into_bytes(),
            Some(&basic_auth(id, secret)),
        )
        .await
    }

    /// The client credentials grant, authenticated with `client_secret_basic`.
    pub async fn client_credentials(&self, id: &str, secret: &str) -> Response {
        self.token_basic(id, secret, &[("grant_type", "client_credentials")])
            .await
    }

    /// `POST /connect/token` with any body, content type and `Authorization` header.
    pub async fn token_raw(
        &self,
        content_type: Option<&str>,
        body: Vec<u8>,
        authorization: Option<&str>,
    ) -> Response {
        let mut req = self.client.post(self.url(TOKEN_PATH)).body(body);
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        if let Some(a) = authorization {
            req = req.header(AUTHORIZATION, a);
        }
        req.send().await.expect("the token request completes")
    }

    /// The password grant for a public client.
    pub async fn password_grant(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
        scope: Option<&str>,
    ) -> Response {
        let mut form = vec![
            ("grant_type", "password"),
            ("client_id", client_id),
            ("username", username),
            ("password", password),
        ];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        self.token(&form).await
    }

    /// The refresh grant for a public client.
    pub async fn refresh(&self, client_id: &str, refresh_token: &str) -> Response {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// `GET /api/protected-resource` with `Authorization: Bearer {bearer}`.
    pub async fn protected(&self, bearer: &str) -> Response {
        self.protected_with(Some(&format!("Bearer {bearer}"))).await
    }

    /// `GET /api/protected-resource` with exactly this `Authorization` header (or none).
    pub async fn protected_with(&self, authorization: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(PROTECTED_PATH));
        if let Some(a) = authorization {
            req = req.header(AUTHORIZATION, a);
        }
        req.send().await.expect("the resource request completes")
    }

    pub async fn jwks(&self) -> Value {
        let res = self
            .client
            .get(self.url(JWKS_PATH))
            .send()
            .await
            .expect("the JWKS request completes");
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("the JWKS is JSON")
    }

    pub async fn jwks_kids(&self) -> Vec<String> {
        let jwks = self.jwks().await;
        jwks["keys"]
            .as_array()
            .expect("a JWKS has a keys array")
            .iter()
            .map(|k| k["kid"].as_str().expect("every key has a kid").to_owned())
            .collect()
    }

    // ---- seeding ----

    /// A public client (no secret) allowed the password and refresh grants, `scopes` both
    /// allowed and default, JWT access tokens; `tweak` adjusts anything else.
    pub async fn add_public_client(&self, id: &str, scopes: &str, tweak: impl FnOnce(&mut Client)) {
        let mut client = client(
            id,
            scopes,
            vec![GrantType::Password, GrantType::RefreshToken],
        );
        tweak(&mut client);
        self.engine
            .admin()
            .create_client(client, false, None)
            .await
            .expect("the public client is created");
    }

    /// A confidential client allowed every grant; returns its generated secret.
    pub async fn add_confidential_client(
        &self,
        id: &str,
        scopes: &str,
        tweak: impl FnOnce(&mut Client),
    ) -> String {
        let mut client = client(id, scopes, GrantType::ALL.to_vec());
        tweak(&mut client);
        self.engine
            .admin()
            .create_client(client, true, None)
            .await
            .expect("the confidential client is created")
            .expect("a generated secret is returned")
    }

    /// A confidential client allowed every grant, with the secret the operator chose.
    pub async fn add_confidential_client_with_secret(
        &self,
        id: &str,
        scopes: &str,
        secret: &str,
        tweak: impl FnOnce(&mut Client),
    ) {
        let mut client = client(id, scopes, GrantType::ALL.to_vec());
        tweak(&mut client);
        self.engine
            .admin()
            .create_client(client, true, Some(SecretString::from(secret)))
            .await
            .expect("the confidential client is created");
    }

    /// A user; `scopes` restricts what they may be granted (`None`: the client decides).
    pub async fn add_user(&self, name: &str, password: &str, scopes: Option<&str>) -> User {
        let scopes = scopes.map(|s| ScopeSet::parse(s).expect("valid scopes"));
        self.engine
            .admin()
            .create_user(name, &SecretString::from(password), scopes)
            .await
            .expect("the user is created")
    }
}

impl StoppedApp {
    pub fn db_path(&self) -> PathBuf {
        self.config.sqlite_path().expect("a SQLite test database")
    }

    /// A new `App` on the same directory, database and master key (a new port).
    pub async fn start(self) -> TestApp {
        let StoppedApp { dir, config, clock } = self;
        start_on(dir, config, clock).await
    }
}

fn client(id: &str, scopes: &str, grant_types: Vec<GrantType>) -> Client {
    let scopes = ScopeSet::parse(scopes).expect("valid scopes");
    Client {
        client_id: id.into(),
        name: format!("test client {id}"),
        secret_hash: None,
        allowed_scopes: scopes.clone(),
        default_scopes: scopes,
        grant_types,
        redirect_uris: Vec::new(),
        policy: TokenPolicy::default(),
        disabled: false,
        created_at: 0,
    }
}

// ---- assertions ----

pub fn cache_control(res: &Response) -> Option<&str> {
    res.headers()
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
}

pub fn www_authenticate(res: &Response) -> Option<String> {
    res.headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("an ASCII challenge").to_owned())
}

/// A successful token response: 200, `Cache-Control: no-store`, a JSON object.
pub async fn token_ok(res: Response) -> Value {
    let status = res.status();
    let no_store = cache_control(&res) == Some("no-store");
    let body: Value = res.json().await.expect("a JSON body");
    assert_eq!(status, StatusCode::OK, "expected 200, got {status}: {body}");
    assert!(no_store, "a token response carries Cache-Control: no-store");
    assert!(body.is_object(), "{body}");
    body
}

/// An RFC 6749 §5.2 error: the status, the `error` code and `Cache-Control: no-store`.
pub async fn oauth_error(res: Response, status: u16, code: &str) -> Value {
    let got = res.status();
    let no_store = cache_control(&res) == Some("no-store");
    let body: Value = res.json().await.expect("an error body is JSON");
    assert_eq!(got.as_u16(), status, "status for {code}: {body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["error_description"].is_string(),
        "an error_description accompanies every error: {body}"
    );
    assert!(no_store, "error responses carry Cache-Control: no-store");
    body
}

/// RFC 6750 §3: 401 with a `Bearer` challenge naming `invalid_token`.
pub async fn assert_invalid_token(res: Response) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = www_authenticate(&res).expect("a WWW-Authenticate challenge");
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let body: Value = res.json().await.expect("a JSON body");
    assert_eq!(body["error"], "invalid_token");
}

/// The refresh token of a token response, which must carry one.
pub fn refresh_token_of(body: &Value) -> String {
    body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a refresh_token in {body}"))
        .to_owned()
}

pub fn access_token_of(body: &Value) -> String {
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an access_token in {body}"))
        .to_owned()
}

// ---- the partner dialects (seeds 000–003) ----

/// An app serving every dialect at its documented path and seeded with the documents'
/// example credentials, as `khoa demo` is.
pub async fn spawn_demo_app() -> TestApp {
    spawn_demo_app_with(|_| {}).await
}

/// [`spawn_demo_app`] with the demo configuration adjusted by `tweak` before start-up.
pub async fn spawn_demo_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let app = spawn_app_with(|c| {
        *c = khoa_server::demo::demo_config(std::mem::take(c));
        tweak(c);
    })
    .await;
    khoa_server::demo::seed(&app.engine)
        .await
        .expect("the demo seed");
    app
}

impl TestApp {
    /// Any request: `method` on `path`, with these headers and this body (none when `None`).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        req.send().await.expect("the request completes")
    }

    /// `POST path` with a JSON body (`Content-Type: application/json`) and extra headers.
    pub async fn post_json(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Response {
        self.post_json_raw(path, headers, &body.to_string()).await
    }

    /// `POST path` with `Content-Type: application/json`, extra headers and exactly these bytes
    /// (which need not be JSON at all).
    pub async fn post_json_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        let mut all = vec![(CONTENT_TYPE.as_str(), "application/json")];
        all.extend_from_slice(headers);
        self.send(
            reqwest::Method::POST,
            path,
            &all,
            Some(body.as_bytes().to_vec()),
        )
        .await
    }
}

/// The keys of a JSON object, in the order the server wrote them.
pub fn keys_in_order(body: &Value) -> Vec<&str> {
    body.as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {body}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// Asserts that `body` is a JSON object with exactly `keys`, in that order.
pub fn assert_keys(body: &Value, keys: &[&str]) {
    assert_eq!(
        keys_in_order(body),
        keys,
        "exactly these fields, in this order: {body}"
    );
}

/// A dialect's token answer: `status`, `Cache-Control: no-store` and a JSON object with exactly
/// `keys`, in that order. Returns the body for the dialect's own checks.
pub async fn dialect_token_body(res: Response, status: StatusCode, keys: &[&str]) -> Value {
    let got = res.status();
    let no_store = cache_control(&res) == Some("no-store");
    let body: Value = res.json().await.expect("a JSON body");
    assert_eq!(got, status, "{body}");
    assert!(no_store, "a token response is never cached");
    assert_keys(&body, keys);
    body
}

/// The JSON body of a response that must have `status`.
pub async fn json_body(res: Response, status: StatusCode) -> Value {
    let got = res.status();
    let text = res.text().await.expect("a body");
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("a JSON body ({e}): {text}"))
}

/// The string `body[field]`; panics naming the field otherwise.
pub fn str_of<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("expected a string {field} in {body}"))
}

/// Only lower-case hexadecimal digits (and at least one).
pub fn is_lower_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `Basic base64(id:secret)` exactly as RFC 7617 (no form-encoding), how seeds 001 and 003 send it.
pub fn plain_basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// Starts an app in an existing directory (e.g. a database the CLI prepared) with its config
/// adjusted by `tweak`.
pub async fn spawn_app_in_with(dir: TempDir, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(dir.path());
    tweak(&mut config);
    start(dir, config).await
}
