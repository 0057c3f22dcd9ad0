//! `khoa agent`: the real binary (`khoa agent --config FILE`) in front of the real khoa server
//! — forwarding with the token put in place of the caller's `Authorization`, seed 000's
//! `x-otp-token` on mutating requests, one new token and one retry after a 401, HTTPS to an
//! upstream verified against its `ca_file`, a JSON 503 naming the upstream within seconds
//! while the token endpoint is down and recovery once it is back, metrics and health, every
//! refusal of a bad configuration, the shipped example, and no secret in its log at trace.
//!
//! Tokens never expire by waiting: the server's clock moves ([`TestApp::advance`]), so that
//! the server refuses a token the agent still holds as fresh.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use khoa_client::agent::AgentConfig;
use khoa_server::demo::{
    DERIVATIVE_PASSWORD, DERIVATIVE_USERNAME, OAUTH2_SERVICE_CLIENT, OAUTH2_SERVICE_SECRET,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Child;
use tokio::task::JoinHandle;

use crate::cli::{Announced, TIMEOUT, announced, free_port, khoa};
use crate::helpers::{PROTECTED_PATH, TestApp, http_client, spawn_demo_app, spawn_demo_app_with};

/// The demo's derivative login (seed 000), where the agent gets its token and OTP.
const DERIVATIVE_LOGIN: &str = "/oapi/auth/gen-secret-key/derivative";

// ---- the agent, as a process ----

/// A running `khoa agent`: its base URL, and its output collected for the checks at the end.
pub struct Agent {
    pub base: String,
    child: Child,
    log: JoinHandle<String>,
    stdout: JoinHandle<String>,
    pub http: reqwest::Client,
}

/// A directory with the agent's configuration file and the secret files it names.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// Writes `name` (a secret file, a definition) beside the configuration.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("a file written");
        path
    }

    /// Writes the configuration `agent.toml`.
    pub fn config(&self, text: &str) -> PathBuf {
        self.file("agent.toml", text)
    }
}

impl Agent {
    /// `khoa agent --config DIR/agent.toml` at `KHOA_LOG=trace`; waits for its announcement.
    pub async fn start(setup: &Setup, env: &[(&str, &str)]) -> Agent {
        let mut child = khoa()
            .arg("agent")
            .arg("--config")
            .arg(setup.dir.path().join("agent.toml"))
            .env("KHOA_LOG", "trace")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("khoa agent starts");
        let Announced { base, log, stdout } =
            announced(&mut child, "khoa agent listening on ").await;
        Agent {
            base,
            child,
            log,
            stdout,
            http: http_client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `method` on the agent's `path`, with these headers and this body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.http.request(method, self.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(b) = body {
            req = req.body(b.to_owned());
        }
        req.send().await.expect("the agent answers")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.send(Method::GET, path, &[], None).await
    }

    /// `GET /_khoa/metrics`, as text.
    pub async fn metrics(&self) -> String {
        let res = self.get("/_khoa/metrics").await;
        assert_eq!(res.status(), StatusCode::OK);
        res.text().await.expect("the metrics")
    }

    /// SIGTERM; waits for a clean exit and returns everything the agent wrote.
    pub async fn stop(mut self) -> String {
        let pid = self.child.id().expect("a running agent").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the agent exits within 10 s of SIGTERM")
            .expect("its status");
        let log = self.log.await.unwrap_or_default();
        let out = self.stdout.await.unwrap_or_default();
        assert!(status.success(), "exit {status} after SIGTERM:\n{log}");
        format!("{out}{log}")
    }
}

/// The value of the sample `name{upstream="NAME"}` (plus other labels written out in
/// `labels`), 0 when there is none.
pub fn metric(text: &str, name: &str, labels: &str) -> u64 {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().expect("a counter value"))
}

/// The JSON body of `res`, which must have `status`.
async fn json_of(res: reqwest::Response, status: StatusCode) -> Value {
    let got = res.status();
    let text = res.text().await.expect("a body");
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("JSON ({e}): {text}"))
}

/// An upstream table for the demo's standard OAuth 2.0 service client.
fn oauth2_upstream(name: &str, app: &TestApp) -> String {
    format!(
        "[upstreams.{name}]\nbase_url = \"{}\"\ndialect = \"oauth2\"\n\
         client_id = \"{OAUTH2_SERVICE_CLIENT}\"\nclient_secret_file = \"service.secret\"\n",
        app.address
    )
}

/// A setup with the service client's secret file (with a final newline, as `echo` writes it).
fn setup_with_secrets() -> Setup {
    let setup = Setup::new();
    setup.file("service.secret", &format!("{OAUTH2_SERVICE_SECRET}\n"));
    setup.file("derivative.password", DERIVATIVE_PASSWORD);
    setup
}

// ---- forwarding ----

#[tokio::test]
async fn requests_reach_the_upstream_with_the_sources_token_in_place_of_the_callers() {
    let app = spawn_demo_app().await;
    let setup = setup_with_secrets();
    // A base URL with a path prefix and a trailing slash, and the token URL given apart.
    setup.config(&format!(
        "listen = \"127.0.0.1:0\"\n\
         [upstreams.demo]\nbase_url = \"{}/api/\"\ntoken_url = \"{}/connect/token\"\n\
         dialect = \"oauth2\"\nclient_id = \"{OAUTH2_SERVICE_CLIENT}\"\n\
         client_secret_file = \"service.secret\"\n",
        app.address, app.address
    ));
    let agent = Agent::start(&setup, &[]).await;

    for method in [Method::GET, Method::POST, Method::DELETE] {
        let res = agent
            .send(
                method.clone(),
                "/demo/protected-resource?page=2",
                &[("Authorization", "Bearer the-callers-own")],
                Some("{}"),
            )
            .await;
        let body = json_of(res, StatusCode::OK).await;
        assert_eq!(body["method"], method.as_str(), "{body}");
        assert_eq!(body["client_id"], OAUTH2_SERVICE_CLIENT, "{body}");
    }
    let m = agent.metrics().await;
    let up = "upstream=\"demo\"";
    assert_eq!(metric(&m, "khoa_agent_requests_total", up), 3, "{m}");
    assert_eq!(
        metric(&m, "khoa_agent_token_calls_total", up),
        1,
        "one token: {m}"
    );
    assert_eq!(
        metric(
            &m,
            "khoa_agent_responses_total",
            "upstream=\"demo\",class=\"2xx\""
        ),
        3,
        "{m}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn mutating_requests_carry_the_sessions_otp_token() {
    let app = spawn_demo_app().await;
    let setup = setup_with_secrets();
    setup.config(&format!(
        "listen = \"127.0.0.1:0\"\n\
         [upstreams.broker]\nbase_url = \"{}\"\ndialect = \"derivative\"\n\
         username = \"{DERIVATIVE_USERNAME}\"\npassword_file = \"derivative.password\"\n",
        app.address
    ));
    let agent = Agent::start(&setup, &[]).await;

    // The server refuses a mutating request with the token alone: what the agent must add.
    let login = app
        .post_json(
            DERIVATIVE_LOGIN,
            &[],
            &json!({"username": DERIVATIVE_USERNAME, "password": DERIVATIVE_PASSWORD}),
        )
        .await;
    let session = json_of(login, StatusCode::OK).await;
    let bare = app
        .send(
            Method::POST,
            PROTECTED_PATH,
            &[(
                "Authorization",
                &format!("Bearer {}", session["access_token"].as_str().unwrap()),
            )],
            None,
        )
        .await;
    assert_eq!(bare.status(), StatusCode::FORBIDDEN, "otp_required");

    for method in [
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::GET,
    ] {
        let res = agent
            .send(
                method.clone(),
                "/broker/api/protected-resource",
                &[],
                Some(""),
            )
            .await;
        let body = json_of(res, StatusCode::OK).await;
        assert_eq!(body["method"], method.as_str(), "{body}");
        assert_eq!(body["client_id"], "oapi-derivative", "{body}");
    }
    agent.stop().await;
}

#[tokio::test]
async fn a_token_the_upstream_refuses_costs_one_new_token_and_one_retry() {
    let app = spawn_demo_app().await;
    let setup = setup_with_secrets();
    setup.config(&format!(
        "listen = \"127.0.0.1:0\"\n{}",
        oauth2_upstream("demo", &app)
    ));
    let agent = Agent::start(&setup, &[]).await;
    let call = || agent.get("/demo/api/protected-resource");
    assert_eq!(call().await.status(), StatusCode::OK);

    // Past the token's lifetime by the server's clock: the agent's token, still fresh by its
    // own, is refused with a 401.
    app.advance(2 * 3600);
    let res = call().await;
    assert_eq!(res.status(), StatusCode::OK, "answered after one retry");

    let m = agent.metrics().await;
    let up = "upstream=\"demo\"";
    assert_eq!(metric(&m, "khoa_agent_token_calls_total", up), 2, "{m}");
    assert_eq!(metric(&m, "khoa_agent_token_logins_total", up), 2, "{m}");
    assert_eq!(
        metric(&m, "khoa_agent_unauthorized_retries_total", up),
        1,
        "{m}"
    );
    assert_eq!(
        metric(&m, "khoa_agent_token_invalidations_total", up),
        1,
        "{m}"
    );
    assert_eq!(metric(&m, "khoa_agent_requests_total", up), 2, "{m}");
    agent.stop().await;
}

#[tokio::test]
async fn without_retry_unauthorized_the_401_is_answered_as_it_came() {
    let app = spawn_demo_app().await;
    let setup = setup_with_secrets();
    setup.config(&format!(
        "listen = \"127.0.0.1:0\"\n{}retry_unauthorized = false\n",
        oauth2_upstream("demo", &app)
    ));
    let agent = Agent::start(&setup, &[]).await;
    assert_eq!(
        agent.get("/demo/api/protected-resource").await.status(),
        StatusCode::OK
    );
    app.advance(2 * 3600);
    let res = agent.get("/demo/api/protected-resource").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"),
        "the upstream's own answer, headers and all"
    );
    // The token was thrown away all the same: the next request gets a new one.
    assert_eq!(
        agent.get("/demo/api/protected-resource").await.status(),
        StatusCode::OK
    );
    let m = agent.metrics().await;
    assert_eq!(
        metric(
            &m,
            "khoa_agent_unauthorized_retries_total",
            "upstream=\"demo\""
        ),
        0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "khoa_agent_token_calls_total", "upstream=\"demo\""),
        2,
        "{m}"
    );
    agent.stop().await;
}

// ---- the token endpoint down ----

#[tokio::test]
async fn a_token_endpoint_that_is_down_is_answered_with_a_quick_503_then_the_agent_recovers() {
    // A server on a port of its own, stopped: nothing listens there until it starts again.
    let port = free_port();
    let app =
        spawn_demo_app_with(|c| c.listen = format!("127.0.0.1:{port}").parse().unwrap()).await;
    let setup = setup_with_secrets();
    setup.config(&format!(
        "listen = \"127.0.0.1:0\"\n{}",
        oauth2_upstream("demo", &app)
    ));
    let stopped = app.stop().await;
    let agent = Agent::start(&setup, &[]).await;

    let started = Instant::now();
    let res = agent.get("/demo/api/protected-resource").await;
    let body = json_of(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(started.elapsed() < Duration::from_secs(5), "within seconds");
    assert_eq!(body["error"], "token_unavailable", "{body}");
    assert_eq!(body["upstream"], "demo", "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    // Asked again at once, the source is backing off: the same answer, with Retry-After.
    let res = agent.get("/demo/api/protected-resource").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        res.headers().contains_key("retry-after"),
        "{:?}",
        res.headers()
    );

    // The server is back on its port: the agent recovers by itself after its back-off.
    let _app = stopped.start().await;
    let recovered = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let res = agent.get("/demo/api/protected-resource").await;
            if res.status() == StatusCode::OK {
                return;
            }
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(recovered.is_ok(), "the agent answers 200 again");
    let m = agent.metrics().await;
    assert!(
        metric(&m, "khoa_agent_token_failures_total", "upstream=\"demo\"") >= 1,
        "{m}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn refused_credentials_are_a_502_naming_the_upstream() {
    let app = spawn_demo_app().await;
    let setup = Setup::new();
    setup.file("service.secret", "not-the-secret");
    setup.config(&format!(
        "listen = \"127.0.0.1:0\"\n{}",
        oauth2_upstream("demo", &app)
    ));
    let agent = Agent::start(&setup, &[]).await;
    let body = json_of(
        agent.get("/demo/api/protected-resource").await,
        StatusCode::BAD_GATEWAY,
    )
    .await;
    assert_eq!(body["error"], "token_refused", "{body}");
    assert_eq!(body["upstream"], "demo", "{body}");
    let log = agent.stop().await;
    assert!(!log.contains("not-the-secret"), "{log}");
}

#[tokio::test]
async fn an_upstream_that_cannot_be_reached_is_a_502_naming_it() {
    let app = spawn_demo_app().await;
    let setup = setup_with_secrets();
    // Tokens from the server; the API itself on a port where nothing listens.
    setup.config(&format!(
        "listen = \"127.0.0.1:0\"\n\
         [upstreams.gone]\nbase_url = \"http://127.0.0.1:{}\"\ntoken_url = \"{}/connect/token\"\n\
         dialect = \"oauth2\"\nclient_id = \"{OAUTH2_SERVICE_CLIENT}\"\n\
         client_secret_file = \"service.secret\"\n",
        free_port(),
        app.address
    ));
    let agent = Agent::start(&setup, &[]).await;
    let body = json_of(agent.get("/gone/x?secret=q").await, StatusCode::BAD_GATEWAY).await;
    assert_eq!(body["error"], "upstream_unreachable", "{body}");
    assert_eq!(body["upstream"], "gone", "{body}");
    assert!(
        !body["message"].as_str().unwrap().contains("secret=q"),
        "{body}"
    );
    agent.stop().await;
}

// ---- the agent's own endpoints ----

#[tokio::test]
async fn an_unknown_upstream_is_a_404_naming_the_known_ones_and_health_is_its_own() {
    let app = spawn_demo_app().await;
    let setup = setup_with_secrets();
    setup.config(&format!(
        "listen = \"127.0.0.1:0\"\n{}{}",
        oauth2_upstream("alpha", &app),
        oauth2_upstream("beta", &app)
    ));
    let agent = Agent::start(&setup, &[]).await;
    let body = json_of(agent.get("/gamma/x").await, StatusCode::NOT_FOUND).await;
    assert_eq!(body["error"], "unknown_upstream", "{body}");
    assert_eq!(body["upstream"], "gamma", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("alpha, beta"), "{message}");

    let health = json_of(agent.get("/_khoa/healthz").await, StatusCode::OK).await;
    assert_eq!(health, json!({"status": "ok"}));
    let m = agent.metrics().await;
    assert!(m.contains("# TYPE khoa_agent_token_calls counter"), "{m}");
    assert!(m.ends_with("# EOF\n"), "OpenMetrics text: {m}");
    assert_eq!(
        metric(&m, "khoa_agent_token_calls_total", "upstream=\"beta\""),
        0,
        "{m}"
    );
    agent.stop().await;
}

// ---- HTTPS ----

/// A CA of the test's own and a certificate for `localhost` it signed: (CA PEM, cert PEM,
/// key PEM).
fn tls_material() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "agent test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut server = CertificateParams::new(vec!["localhost".into()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "khoa");
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn https_upstreams_are_verified_against_their_ca_file() {
    let (ca, cert, key) = tls_material();
    let certs = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let app = spawn_demo_app_with(|c| {
        c.tls.cert_file = Some(cert_file);
        c.tls.key_file = Some(key_file);
    })
    .await;
    let https = app.address.replace("http://127.0.0.1", "https://localhost");
    let setup = setup_with_secrets();
    setup.file("ca.pem", &ca);
    let upstream = |name: &str, ca: &str| {
        format!(
            "[upstreams.{name}]\nbase_url = \"{https}\"\ndialect = \"oauth2\"\n\
             client_id = \"{OAUTH2_SERVICE_CLIENT}\"\nclient_secret_file = \"service.secret\"\n{ca}"
        )
    };
    setup.config(&format!(
        "listen = \"127.0.0.1:0\"\n{}{}",
        upstream("trusted", "ca_file = \"ca.pem\"\n"),
        // The system's roots do not know the test's CA.
        upstream("system", "")
    ));
    let agent = Agent::start(&setup, &[]).await;
    let body = json_of(
        agent.get("/trusted/api/protected-resource").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["client_id"], OAUTH2_SERVICE_CLIENT, "{body}");
    let refused = json_of(
        agent.get("/system/api/protected-resource").await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(refused["error"], "token_unavailable", "{refused}");
    assert_eq!(refused["upstream"], "system", "{refused}");
    agent.stop().await;
}

// ---- no secret in the log ----

/// The first run of at least 32 hexadecimal digits in `text`: what an opaque token or an OTP
/// looks like.
fn long_hex_run(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut start = 0;
    for i in 0..=bytes.len() {
        if i < bytes.len() && bytes[i].is_ascii_hexdigit() {
            continue;
        }
        if i - start >= 32 {
            return Some(&text[start..i]);
        }
        start = i + 1;
    }
    None
}

#[tokio::test]
async fn nothing_secret_reaches_the_agents_log_at_trace() {
    let app = spawn_demo_app().await;
    let setup = setup_with_secrets();
    setup.config(&format!(
        "listen = \"127.0.0.1:0\"\n{}\
         [upstreams.broker]\nbase_url = \"{}\"\ndialect = \"derivative\"\n\
         username = \"{DERIVATIVE_USERNAME}\"\npassword_env = \"BROKER_PASSWORD\"\n",
        oauth2_upstream("demo", &app),
        app.address
    ));
    let agent = Agent::start(&setup, &[("BROKER_PASSWORD", DERIVATIVE_PASSWORD)]).await;
    let caller = "Bearer callers-own-credential-0123";
    for path in [
        "/demo/api/protected-resource?api_key=query-secret-0123",
        "/broker/api/protected-resource",
    ] {
        for method in [Method::GET, Method::POST] {
            let res = agent
                .send(
                    method,
                    path,
                    &[("Authorization", caller)],
                    Some("body-secret-0123"),
                )
                .await;
            assert_eq!(res.status(), StatusCode::OK);
        }
    }
    // A refused token, a new one, a retry.
    app.advance(10 * 3600);
    for path in [
        "/demo/api/protected-resource",
        "/broker/api/protected-resource",
    ] {
        assert_eq!(agent.get(path).await.status(), StatusCode::OK);
    }
    let log = agent.stop().await;
    assert!(
        log.contains("forwarded"),
        "the agent logged its requests:\n{log}"
    );
    for secret in [
        OAUTH2_SERVICE_SECRET,
        DERIVATIVE_PASSWORD,
        "callers-own-credential",
        "query-secret",
        "body-secret",
        // A derivative token begins with the account.
        &format!("{DERIVATIVE_USERNAME}||"),
        // The service client's tokens are JWTs.
        "eyJ",
    ] {
        assert!(!log.contains(secret), "the log holds `{secret}`:\n{log}");
    }
    assert_eq!(long_hex_run(&log), None, "{log}");
}

// ---- the shipped example ----

#[tokio::test]
async fn the_example_configuration_loads() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/agent.example.toml");
    let text = std::fs::read_to_string(&example).expect("deploy/agent.example.toml");
    // Its files under a directory of the test's own, each secret file it names written (64
    // hex digits: also a partner key), and a port of the test's own.
    let setup = Setup::new();
    let root = setup.dir.path().display().to_string();
    let text = text
        .replace("/etc/khoa/", &format!("{root}/etc/"))
        .replace("/var/lib/khoa-agent/", &format!("{root}/state/"))
        .replace("127.0.0.1:7070", "127.0.0.1:0");
    std::fs::create_dir(setup.dir.path().join("etc")).unwrap();
    let mut files = 0;
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if let Some((key, value)) = line.split_once('=')
            && key.trim().ends_with("_file")
        {
            std::fs::write(
                value.trim().trim_matches('"'),
                format!("{}\n", "ab".repeat(32)),
            )
            .unwrap();
            files += 1;
        }
    }
    assert!(files >= 3, "the example names its secret files");
    let path = setup.config(&text);
    let config = AgentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = config.upstreams.keys().map(String::as_str).collect();
    assert_eq!(names, ["broker", "sepay", "tconnect", "tripdata"]);
    assert_eq!(config.listen.ip().to_string(), "127.0.0.1");
}

// ---- configuration refused at start-up ----

/// `khoa agent` on `config` (in a directory with `files`): exits 1 before listening, and its
/// standard error names the file and `key`. Returns the standard error.
async fn refused(config: &str, files: &[(&str, &str)], key: &str) -> String {
    let setup = Setup::new();
    for (name, text) in files {
        setup.file(name, text);
    }
    // Should a refusal fail to happen, the agent would not hold a fixed port meanwhile.
    let path = if config.contains("listen") {
        setup.config(config)
    } else {
        setup.config(&format!("listen = \"127.0.0.1:0\"\n{config}"))
    };
    let out = crate::cli::run(khoa(), &["agent", "--config", path.to_str().unwrap()], None).await;
    assert_eq!(out.status.code(), Some(1), "refused: {}", out.stderr);
    assert!(!out.stdout.contains("listening"), "{}", out.stdout);
    let at = format!("{}: {key}", path.display());
    assert!(out.stderr.contains(&at), "`{at}` in: {}", out.stderr);
    out.stderr
}

/// A valid upstream table, to which each refusal adds or changes one thing.
const HUB: &str = "[upstreams.hub]\nbase_url = \"https://hub.example\"\ndialect = \"bankhub\"\n\
                   client_id = \"app\"\n";

#[tokio::test]
async fn a_remote_listen_address_needs_allow_remote() {
    let e = refused(
        &format!("listen = \"0.0.0.0:7070\"\n{HUB}client_secret_file = \"s\"\n"),
        &[("s", "x")],
        "listen",
    )
    .await;
    assert!(e.contains("allow_remote"), "{e}");
}

#[tokio::test]
async fn an_unknown_dialect_is_refused_listing_the_built_in_ones() {
    let e = refused(
        &format!(
            "{}client_secret_file = \"s\"\n",
            HUB.replace("bankhub", "bankhubb")
        ),
        &[("s", "x")],
        "upstreams.hub.dialect",
    )
    .await;
    assert!(
        e.contains("oauth2, derivative, bankhub, partner, vietqr"),
        "{e}"
    );
}

#[tokio::test]
async fn a_definition_file_that_does_not_load_is_refused_with_its_own_error() {
    let e = refused(
        &format!(
            "{}client_secret_file = \"s\"\n",
            HUB.replace("\"bankhub\"", "\"mine.toml\"")
        ),
        &[
            ("s", "x"),
            ("mine.toml", "name = \"mine\"\nnot_a_key = 1\n"),
        ],
        "upstreams.hub.dialect",
    )
    .await;
    assert!(
        e.contains("dialect definition") && e.contains("mine.toml"),
        "{e}"
    );
}

#[tokio::test]
async fn a_missing_secret_file_is_refused() {
    let e = refused(
        &format!("{HUB}client_secret_file = \"/nonexistent/khoa.secret\"\n"),
        &[],
        "upstreams.hub.client_secret_file",
    )
    .await;
    assert!(
        e.contains("/nonexistent/khoa.secret") && e.contains("No such file"),
        "{e}"
    );
}

#[tokio::test]
async fn an_empty_secret_file_is_refused() {
    let e = refused(
        &format!("{HUB}client_secret_file = \"s\"\n"),
        &[("s", "\n")],
        "upstreams.hub.client_secret_file",
    )
    .await;
    assert!(e.contains("is empty"), "{e}");
}

#[tokio::test]
async fn a_secret_from_both_a_file_and_the_environment_is_refused() {
    let e = refused(
        &format!("{HUB}client_secret_file = \"s\"\nclient_secret_env = \"HUB_SECRET\"\n"),
        &[("s", "x")],
        "upstreams.hub.client_secret_file",
    )
    .await;
    assert!(e.contains("client_secret_env"), "{e}");
}

#[tokio::test]
async fn a_missing_environment_variable_is_refused() {
    let e = refused(
        &format!("{HUB}client_secret_env = \"KHOA_AGENT_TEST_UNSET\"\n"),
        &[],
        "upstreams.hub.client_secret_env",
    )
    .await;
    assert!(e.contains("KHOA_AGENT_TEST_UNSET is not set"), "{e}");
}

#[tokio::test]
async fn a_base_url_that_is_not_http_is_refused() {
    refused(
        &format!(
            "{}client_secret_file = \"s\"\n",
            HUB.replace("https://hub.example", "ftp://hub.example")
        ),
        &[("s", "x")],
        "upstreams.hub.base_url",
    )
    .await;
}

#[tokio::test]
async fn a_configuration_without_upstreams_is_refused() {
    refused("listen = \"127.0.0.1:0\"\n", &[], "upstreams").await;
}

#[tokio::test]
async fn an_unknown_key_is_refused_by_name() {
    let e = refused(
        &format!("{HUB}client_secret = \"inline\"\n"),
        &[],
        "upstreams.hub.client_secret",
    )
    .await;
    assert!(e.contains("unknown field"), "{e}");
    assert!(!e.contains("inline"), "not the value: {e}");
}

#[tokio::test]
async fn the_reserved_name_and_names_that_are_no_path_segment_are_refused() {
    refused(
        &format!(
            "{}client_secret_file = \"s\"\n",
            HUB.replace("hub]", "_khoa]")
        ),
        &[("s", "x")],
        "upstreams._khoa",
    )
    .await;
    refused(
        &format!(
            "{}client_secret_file = \"s\"\n",
            HUB.replace("hub]", "Hub]")
        ),
        &[("s", "x")],
        "upstreams.Hub",
    )
    .await;
}

#[tokio::test]
async fn a_credential_the_dialect_needs_is_asked_for_at_start_up() {
    // derivative logs in with a username and a password; neither is given.
    let e = refused(
        "[upstreams.broker]\nbase_url = \"https://broker.example\"\ndialect = \"derivative\"\n",
        &[],
        "upstreams.broker",
    )
    .await;
    assert!(e.contains("username"), "{e}");
}

#[tokio::test]
async fn a_ca_file_without_a_certificate_is_refused() {
    let e = refused(
        &format!("{HUB}client_secret_file = \"s\"\nca_file = \"ca.pem\"\n"),
        &[("s", "x"), ("ca.pem", "not a certificate\n")],
        "upstreams.hub.ca_file",
    )
    .await;
    assert!(e.contains("ca.pem"), "{e}");
}

// ---- against the misbehaving stand-in ----

/// The stand-in on a manual clock that never moves (its tokens live 60 s by it).
async fn standin() -> khoa_standin::StandIn {
    khoa_standin::StandIn::start(khoa_standin::ManualClock::new(1_000_000).as_now()).await
}

/// An upstream `name` whose tokens come from the stand-in's `/token` (client credentials) and
/// whose API is its `/resource`.
fn standin_upstream(name: &str, s: &khoa_standin::StandIn, extra: &str) -> String {
    format!(
        "[upstreams.{name}]\nbase_url = \"{}\"\ntoken_url = \"{}\"\ndialect = \"oauth2\"\n\
         client_id = \"{}\"\nclient_secret_env = \"STANDIN_SECRET\"\n{extra}",
        s.url("/resource"),
        s.url("/token"),
        khoa_standin::CLIENT_ID
    )
}

async fn standin_agent(s: &khoa_standin::StandIn, extra: &str) -> Agent {
    let setup = Setup::new();
    setup.config(&format!(
        "listen = \"127.0.0.1:0\"\n{}",
        standin_upstream("p", s, extra)
    ));
    Agent::start(&setup, &[("STANDIN_SECRET", khoa_standin::CLIENT_SECRET)]).await
}

#[tokio::test]
async fn method_path_query_headers_and_body_are_forwarded_as_sent_less_hop_by_hop_ones() {
    let s = standin().await;
    let agent = standin_agent(&s, "").await;
    let res = agent
        .send(
            Method::PUT,
            "/p/items/a%2Fb/?q=1&q=2&e=%20x",
            &[
                ("Authorization", "Bearer the-callers-own"),
                ("X-Custom", "kept"),
                ("Content-Type", "text/plain"),
                ("Connection", "x-hop"),
                ("X-Hop", "dropped"),
                ("Proxy-Authorization", "Basic dropped"),
            ],
            Some("the body\u{1F511}"),
        )
        .await;
    assert_eq!(res.headers()["content-type"], "application/json", "kept");
    let echo = json_of(res, StatusCode::OK).await;
    assert_eq!(
        echo["ok"], true,
        "the stand-in took the agent's token: {echo}"
    );

    let seen = s
        .last_resource_request()
        .expect("the request reached the stand-in");
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.path_and_query, "/resource/items/a%2Fb/?q=1&q=2&e=%20x");
    assert_eq!(seen.body_text(), "the body\u{1F511}");
    assert_eq!(seen.header("x-custom"), Some("kept"));
    assert_eq!(seen.header("content-type"), Some("text/plain"));
    let auth: Vec<&str> = seen.header_all("authorization").collect();
    assert_eq!(auth.len(), 1, "{seen:?}");
    assert!(auth[0].starts_with("Bearer ") && !auth[0].contains("the-callers-own"));
    for gone in ["x-hop", "proxy-authorization"] {
        assert_eq!(seen.header(gone), None, "{gone} forwarded: {seen:?}");
    }
    assert_eq!(seen.header("host"), Some(s.addr().to_string().as_str()));
    assert_eq!(s.counts().token_calls, 1);
    agent.stop().await;
}

#[tokio::test]
async fn the_otp_token_goes_on_mutating_requests_only_replacing_the_callers() {
    // The derivative session from the real server; the API is the stand-in, which records
    // what arrives (and refuses the token it never issued, answered as it came).
    let app = spawn_demo_app().await;
    let s = standin().await;
    let setup = setup_with_secrets();
    setup.config(&format!(
        "listen = \"127.0.0.1:0\"\n\
         [upstreams.broker]\nbase_url = \"{}\"\ntoken_url = \"{}{DERIVATIVE_LOGIN}\"\n\
         dialect = \"derivative\"\nusername = \"{DERIVATIVE_USERNAME}\"\n\
         password_file = \"derivative.password\"\nretry_unauthorized = false\n",
        s.url("/resource"),
        app.address
    ));
    let agent = Agent::start(&setup, &[]).await;
    for method in [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ] {
        let res = agent
            .send(
                method,
                "/broker/orders",
                &[("x-otp-token", "the-callers")],
                None,
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let seen = s.resource_requests();
    assert_eq!(seen.len(), 6);
    for r in &seen {
        let otp = r.header("x-otp-token");
        if matches!(r.method.as_str(), "GET" | "HEAD") {
            assert_eq!(otp, Some("the-callers"), "left as sent: {r:?}");
        } else {
            let otp = otp.expect("the session's OTP");
            assert_eq!(otp.len(), 32, "seed 000's 32 hex digits: {r:?}");
        }
    }
    agent.stop().await;
}

#[tokio::test]
async fn a_401_costs_exactly_one_new_token_and_one_retry_with_the_same_body() {
    let s = standin().await;
    let agent = standin_agent(&s, "").await;
    assert_eq!(agent.get("/p/x").await.status(), StatusCode::OK);
    s.unauthorized_next(1);
    let res = agent
        .send(Method::POST, "/p/orders", &[], Some("{\"amount\":1}"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let c = s.counts();
    assert_eq!(c.token_calls, 2, "one new token: {c:?}");
    assert_eq!(c.resource_calls, 3, "one retry: {c:?}");
    let seen = s.resource_requests();
    let (refused, retried) = (&seen[1], &seen[2]);
    assert_eq!(refused.body, retried.body, "the body sent again");
    assert_eq!(retried.body_text(), "{\"amount\":1}");
    assert_ne!(
        refused.header("authorization"),
        retried.header("authorization"),
        "with the new token"
    );
    // Revoked tokens too; and a second 401 in a row is answered as it came, once retried.
    s.revoke_all();
    assert_eq!(agent.get("/p/x").await.status(), StatusCode::OK);
    s.unauthorized_next(2);
    assert_eq!(agent.get("/p/x").await.status(), StatusCode::UNAUTHORIZED);
    let m = agent.metrics().await;
    assert_eq!(
        metric(
            &m,
            "khoa_agent_unauthorized_retries_total",
            "upstream=\"p\""
        ),
        3,
        "{m}"
    );
    assert_eq!(s.counts().token_calls, 4);
    agent.stop().await;
}

#[tokio::test]
async fn many_concurrent_callers_cause_one_token_call() {
    let s = standin().await;
    let agent = standin_agent(&s, "").await;
    s.hold_tokens();
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let (http, url) = (agent.http.clone(), agent.url(&format!("/p/n/{i}")));
            tokio::spawn(async move { http.get(url).send().await.unwrap().status() })
        })
        .collect();
    tokio::time::timeout(TIMEOUT, s.wait_until_held(1))
        .await
        .expect("the token call arrives");
    s.release_tokens();
    for call in calls {
        assert_eq!(call.await.unwrap(), StatusCode::OK);
    }
    let c = s.counts();
    assert_eq!((c.token_calls, c.resource_calls), (1, 40), "{c:?}");
    agent.stop().await;
}

#[tokio::test]
async fn a_busy_token_endpoints_retry_after_is_passed_on() {
    let s = standin().await;
    let agent = standin_agent(&s, "").await;
    s.fail_tokens(1, 429, Some(7));
    let res = agent.get("/p/x").await;
    assert_eq!(res.headers()["retry-after"], "7");
    let body = json_of(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["error"], "token_unavailable", "{body}");
    assert_eq!(body["upstream"], "p", "{body}");
    // Within those seconds no caller reaches the token endpoint again.
    let res = agent.get("/p/x").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=7).contains(&wait), "{wait}");
    assert_eq!(s.counts().token_calls, 1);
    assert_eq!(s.counts().resource_calls, 0);
    agent.stop().await;
}

#[tokio::test]
async fn a_token_endpoint_answering_503_is_a_quick_503_and_the_agent_recovers_after() {
    let s = standin().await;
    let agent = standin_agent(&s, "").await;
    s.set_down(true);
    let started = Instant::now();
    let body = json_of(agent.get("/p/x").await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(body["error"], "token_unavailable", "{body}");
    s.set_down(false);
    let back = tokio::time::timeout(Duration::from_secs(30), async {
        while agent.get("/p/x").await.status() != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(back.is_ok(), "recovered");
    assert_eq!(s.counts().logins, 1);
    agent.stop().await;
}

#[tokio::test]
async fn bodies_past_the_limit_and_dot_segments_are_refused_before_any_call() {
    let s = standin().await;
    let agent = standin_agent(&s, "").await;
    let big = "x".repeat(khoa_client::agent::MAX_BODY + 1);
    let body = json_of(
        agent.send(Method::POST, "/p/upload", &[], Some(&big)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(body["error"], "request_too_large", "{body}");
    // Raw, as no URL library would send it: `..` would leave the base path.
    let mut tcp = tokio::net::TcpStream::connect(agent.base.trim_start_matches("http://"))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(b"GET /p/../token HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(s.counts().token_calls + s.counts().resource_calls, 0);
    agent.stop().await;
}
