//! Several real `khoa serve` processes on one PostgreSQL database (issue 4). The nodes are
//! stateless, so whatever one of them does — rotate a refresh token, detect its reuse, revoke a
//! session, pick up a rotated signing key, count a failed sign-in — every other one must see; a
//! node must say clearly that PostgreSQL is missing at start, answer 503 while it is away and
//! serve again when it is back; and nothing secret may reach PostgreSQL in the clear.
//!
//! Every test gets a fresh database on this binary's shared throwaway cluster
//! ([`PgCluster::shared`]); the outage test stops a cluster of its own. A node is the `khoa`
//! binary with a clean environment, the deployment's one master key and issuer, a cheap Argon2
//! and a port of its own, killed when dropped. Clients and users are seeded through an engine
//! opened in this process on the same database and configuration, as the CLI verbs do; signing
//! keys are rotated through the CLI itself.

use khoa_core::engine::Engine;
use khoa_core::model::{AccessTokenFormat, Client, GrantType, TokenPolicy};
use khoa_core::scope::ScopeSet;
use khoa_pgtest::PgCluster;
use khoa_server::config::Config;
use khoa_server::startup::open_engine;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::task::{JoinHandle, JoinSet};

use crate::cli::{collect_stderr, field, free_port, khoa, run};
use crate::helpers::{
    FORM_CONTENT_TYPE, JWKS_PATH, PROTECTED_PATH, TOKEN_PATH, access_token_of,
    assert_invalid_token, basic_auth, form_body, is_jwt, json_body, jwt_claims, jwt_header,
    oauth_error, refresh_token_of, test_config, token_ok,
};

/// The `issuer` of every node: a token minted by one node names it, and every node checks it.
const ISSUER: &str = "https://khoa.multinode.test";
/// The deployment's one master key: every node must open what any other node sealed.
const MASTER_KEY: &str = "ffb3adc733e0c7b622eb16d2fbbdc16348a0aae3e7a396b6f1c3b652fd56cca5";
/// From spawning a node to its `/healthz` answering.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Between two looks at another process: there is nothing to wait on but its answers.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

const USER: &str = "alice@multinode.test";
const PASSWORD: &str = "alice's multinode password";
const SCOPE: &str = "read offline_access";
const SERVICE_SECRET: &str = "multinode-service-secret-0123456789abcdef";

// ---- the deployment: a database, an engine to seed it, nodes ----

/// Runs `f` — `initdb`, `pg_ctl`, `createdb`: processes to wait for — off the runtime's
/// thread, passing its panic on as it is.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// A fresh, empty database on the shared cluster.
async fn fresh_database(name: &'static str) -> String {
    blocking(move || PgCluster::shared().create_database(name)).await
}

/// Connections per node. Every test of this binary may run at once on the one shared cluster
/// (PostgreSQL's default `max_connections` is 100), several nodes each: small pools keep them
/// all under it however many test threads there are.
const POOL_SIZE: u32 = 4;

/// What every node is configured with, as a [`Config`]: the test config's cheap Argon2, this
/// database, the shared master key and issuer, a small pool. [`khoa_on_pg`] says the same in
/// `KHOA_*` variables.
fn config_on(database_url: &str) -> Config {
    let mut config = Config {
        database_url: database_url.to_owned(),
        issuer: Some(ISSUER.to_owned()),
        master_key: Some(SecretString::from(MASTER_KEY)),
        master_key_file: None,
        // The directory only places a SQLite file and a key file, neither of which is used.
        ..test_config(Path::new(""))
    };
    config.database.max_connections = POOL_SIZE;
    config
}

/// `khoa` configured as every node of the deployment (see [`config_on`]).
fn khoa_on_pg(database_url: &str) -> Command {
    let mut cmd = khoa();
    cmd.env("KHOA_DATABASE_URL", database_url)
        .env("KHOA_MASTER_KEY", MASTER_KEY)
        .env("KHOA_ISSUER", ISSUER)
        .env("KHOA_DATABASE__MAX_CONNECTIONS", POOL_SIZE.to_string())
        .env("KHOA_PASSWORD_HASH__MEMORY_KIB", "64")
        .env("KHOA_PASSWORD_HASH__ITERATIONS", "1")
        .env("KHOA_PASSWORD_HASH__PARALLELISM", "1");
    cmd
}

/// An engine in this process on the deployment's database, to seed it as the CLI verbs do.
async fn seeding_engine(database_url: &str) -> Arc<Engine> {
    open_engine(&config_on(database_url), ISSUER.to_owned())
        .await
        .expect("an engine on the test database")
}

fn policy(access_format: AccessTokenFormat, reuse_window: i64) -> TokenPolicy {
    TokenPolicy {
        access_format,
        reuse_window,
        ..TokenPolicy::default()
    }
}

fn client(id: &str, grant_types: Vec<GrantType>, policy: TokenPolicy) -> Client {
    let scopes = ScopeSet::parse(SCOPE).expect("valid scopes");
    Client {
        client_id: id.into(),
        name: format!("multinode client {id}"),
        secret_hash: None,
        allowed_scopes: scopes.clone(),
        default_scopes: scopes,
        grant_types,
        redirect_uris: Vec::new(),
        policy,
        disabled: false,
        created_at: 0,
    }
}

/// A public client for alice's password grant and its refreshes.
async fn add_app(engine: &Engine, id: &str, policy: TokenPolicy) {
    let grants = vec![GrantType::Password, GrantType::RefreshToken];
    engine
        .admin()
        .create_client(client(id, grants, policy), false, None)
        .await
        .expect("the public client is created");
}

/// A confidential client for the client credentials grant, with [`SERVICE_SECRET`].
async fn add_service(engine: &Engine, id: &str, access_format: AccessTokenFormat) {
    let grants = vec![GrantType::ClientCredentials];
    let secret = Some(SecretString::from(SERVICE_SECRET));
    engine
        .admin()
        .create_client(client(id, grants, policy(access_format, 5)), true, secret)
        .await
        .expect("the confidential client is created");
}

async fn add_alice(engine: &Engine) {
    engine
        .admin()
        .create_user(USER, &SecretString::from(PASSWORD), None)
        .await
        .expect("alice is created");
}

/// Key settings that keep rotations short: nodes re-read keys every second and JWKS caches
/// keep a copy one second, so a lead of 2 s is safe.
const FAST_KEYS: [(&str, &str); 2] = [
    ("KHOA_KEYS__RELOAD_SECS", "1"),
    ("KHOA_KEYS__JWKS_MAX_AGE_SECS", "1"),
];

/// `khoa keys rotate --lead LEAD` on the deployment's database, with [`FAST_KEYS`]; the next
/// kid and when it activates.
async fn rotate_keys_through_the_cli(database_url: &str, lead: u64) -> (String, i64) {
    let mut cmd = khoa_on_pg(database_url);
    cmd.envs(FAST_KEYS);
    let lead = lead.to_string();
    let out = run(cmd, &["keys", "rotate", "--lead", &lead], None).await;
    assert!(
        out.status.success(),
        "khoa keys rotate failed ({}): {}",
        out.status,
        out.stderr
    );
    let activates_at = field(&out.stdout, "activates_at").trim().parse().unwrap();
    (field(&out.stdout, "next signing key"), activates_at)
}

/// The clock of the nodes that name its file (`danger_clock_file`): a test moves their time
/// forward by rewriting it, and each node reads it within 50 ms.
struct MovedClock {
    dir: tempfile::TempDir,
}

impl MovedClock {
    fn new() -> Self {
        MovedClock {
            dir: tempfile::tempdir().expect("a directory for the clock file"),
        }
    }

    fn path(&self) -> String {
        self.dir.path().join("clock").display().to_string()
    }

    /// The environment that puts a node (or a CLI verb) on this clock.
    fn env(&self) -> (&'static str, String) {
        ("KHOA_DANGER_CLOCK_FILE", self.path())
    }

    /// Moves the nodes' time to at least `at` (Unix seconds). Written beside and renamed, so
    /// that a node never reads half a number.
    fn move_to(&self, at: i64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let partial = self.dir.path().join("clock.partial");
        std::fs::write(&partial, (at - now + 1).max(0).to_string()).unwrap();
        std::fs::rename(&partial, self.path()).unwrap();
    }
}

/// Polls `check` until it holds; fails naming `what` once `within` has passed.
async fn eventually(within: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A running `khoa serve`, killed when dropped.
struct Node {
    /// `http://127.0.0.1:PORT`
    base: String,
    process: Child,
    /// Its standard error, collected to explain a failure; taken once the process is gone.
    log: Option<JoinHandle<String>>,
    http: reqwest::Client,
}

/// `N` nodes on `database_url`, each with `env` on top of the deployment's, started together
/// and each answering `/healthz`.
async fn start_nodes<const N: usize>(database_url: &str, env: &[(&str, &str)]) -> [Node; N] {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut starting = JoinSet::new();
    for i in 0..N {
        let (url, env) = (database_url.to_owned(), env.clone());
        starting.spawn(async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (&**k, &**v)).collect();
            (i, start_node(&url, &env).await)
        });
    }
    let mut nodes = starting.join_all().await;
    nodes.sort_by_key(|(i, _)| *i);
    let nodes: Vec<Node> = nodes.into_iter().map(|(_, node)| node).collect();
    nodes
        .try_into()
        .unwrap_or_else(|_| unreachable!("N nodes were started"))
}

/// One node on `database_url` with `env` on top of the deployment's, answering `/healthz`.
async fn start_node(database_url: &str, env: &[(&str, &str)]) -> Node {
    let mut refused = Vec::new();
    for _ in 0..3 {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut process = khoa_on_pg(database_url)
            .env("KHOA_LISTEN", &addr)
            .envs(env.iter().copied())
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("khoa serve starts");
        let log = Some(collect_stderr(&mut process));
        let mut node = Node {
            base: format!("http://{addr}"),
            process,
            log,
            http: crate::helpers::http_builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client"),
        };
        match node.until_live().await {
            Ok(()) => return node,
            // Another process took the port between our probe and the node's bind.
            Err(log) if log.contains("cannot listen") => refused.push(log),
            Err(log) => panic!("khoa serve on {addr} did not come up: {log}"),
        }
    }
    panic!("khoa serve found no free port: {}", refused.join("\n---\n"));
}

impl Node {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits, bounded, until `/healthz` answers; the node's log if it exits or never does.
    async fn until_live(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(res) = self.http.get(self.url("/healthz")).send().await
                && res.status() == StatusCode::OK
            {
                return Ok(());
            }
            if let Some(status) = self.process.try_wait().expect("the node's status") {
                return Err(format!("exited ({status}):\n{}", self.take_log().await));
            }
            if Instant::now() > deadline {
                let _ = self.process.kill().await;
                let log = self.take_log().await;
                return Err(format!("not live within {START_TIMEOUT:?}:\n{log}"));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The log, once the process has ended (before, reading it would never finish).
    async fn take_log(&mut self) -> String {
        match self.log.take() {
            Some(reader) => reader.await.unwrap_or_default(),
            None => String::new(),
        }
    }

    /// The very process started at first: not exited, not restarted.
    fn assert_still_running(&mut self) {
        let status = self.process.try_wait().expect("the node's status");
        assert!(status.is_none(), "the node exited ({status:?})");
    }

    async fn get(&self, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("the node answers")
    }

    async fn status_of(&self, path: &str) -> StatusCode {
        self.get(path).await.status()
    }

    /// `POST /connect/token` with a form body, to send now or from another task.
    fn token_request(&self, form: &[(&str, &str)], authorization: Option<&str>) -> RequestBuilder {
        let req = self
            .http
            .post(self.url(TOKEN_PATH))
            .header(CONTENT_TYPE, FORM_CONTENT_TYPE)
            .body(form_body(form));
        match authorization {
            Some(a) => req.header(AUTHORIZATION, a),
            None => req,
        }
    }

    fn refresh_request(&self, client_id: &str, refresh_token: &str) -> RequestBuilder {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
        ];
        self.token_request(&form, None)
    }

    async fn refresh(&self, client_id: &str, refresh_token: &str) -> Response {
        let req = self.refresh_request(client_id, refresh_token);
        req.send().await.expect("the refresh request completes")
    }

    /// Alice's password grant through the public client `client_id`, asking for a refresh token.
    async fn password_grant(&self, client_id: &str) -> Response {
        let form = [
            ("grant_type", "password"),
            ("client_id", client_id),
            ("username", USER),
            ("password", PASSWORD),
            ("scope", SCOPE),
        ];
        let req = self.token_request(&form, None);
        req.send().await.expect("the token request completes")
    }

    async fn client_credentials(&self, client_id: &str) -> Response {
        let form = [("grant_type", "client_credentials"), ("scope", "read")];
        let req = self.token_request(&form, Some(&basic_auth(client_id, SERVICE_SECRET)));
        req.send().await.expect("the token request completes")
    }

    async fn protected(&self, bearer: &str) -> Response {
        self.http
            .get(self.url(PROTECTED_PATH))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("the resource request completes")
    }

    async fn jwks_kids(&self) -> Vec<String> {
        let jwks = json_body(self.get(JWKS_PATH).await, StatusCode::OK).await;
        jwks["keys"]
            .as_array()
            .expect("a JWKS has a keys array")
            .iter()
            .map(|k| k["kid"].as_str().expect("every key has a kid").to_owned())
            .collect()
    }
}

/// `count` redemptions of one refresh token at once, the i-th sent to node i mod n; each
/// answer's status and body.
async fn redeem_concurrently(
    nodes: &[Node],
    client_id: &str,
    refresh_token: &str,
    count: usize,
) -> Vec<(StatusCode, Value)> {
    let mut redemptions = JoinSet::new();
    for i in 0..count {
        let req = nodes[i % nodes.len()].refresh_request(client_id, refresh_token);
        redemptions.spawn(async move {
            let res = req.send().await.expect("the refresh request completes");
            let status = res.status();
            (status, res.json::<Value>().await.expect("a JSON body"))
        });
    }
    redemptions.join_all().await
}

// ---- refresh tokens across nodes ----

#[tokio::test]
async fn a_refresh_token_from_one_node_is_rotated_on_a_second_and_its_replay_refused_on_a_third() {
    // Arrange: three nodes; a client without a retry window, so any replay is refused at once.
    let url = fresh_database("mn_refresh_across_nodes").await;
    let engine = seeding_engine(&url).await;
    add_app(&engine, "web", policy(AccessTokenFormat::Jwt, 0)).await;
    add_alice(&engine).await;
    let [a, b, c] = start_nodes(&url, &[]).await;

    // Act 1: issued by A, redeemed on B.
    let issued = token_ok(a.password_grant("web").await).await;
    let first = refresh_token_of(&issued);
    let rotated = token_ok(b.refresh("web", &first).await).await;

    // Assert: rotated, and B's access token (the deployment's one key) is good on every node.
    assert_ne!(refresh_token_of(&rotated), first, "B rotated what A issued");
    let access = access_token_of(&rotated);
    for node in [&a, &b, &c] {
        assert_eq!(node.protected(&access).await.status(), StatusCode::OK);
    }

    // Act 2, Assert: the redeemed token replayed on C.
    oauth_error(c.refresh("web", &first).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn fifty_concurrent_redemptions_across_nodes_all_get_the_same_successor_inside_the_window() {
    // Arrange
    let url = fresh_database("mn_concurrent_in_window").await;
    let engine = seeding_engine(&url).await;
    add_app(&engine, "web", policy(AccessTokenFormat::Jwt, 5)).await;
    add_alice(&engine).await;
    let nodes: [Node; 3] = start_nodes(&url, &[]).await;
    let first = refresh_token_of(&token_ok(nodes[0].password_grant("web").await).await);

    // Act: 50 redemptions at once, round-robin over the three nodes.
    let answers = redeem_concurrently(&nodes, "web", &first, 50).await;

    // Assert: one rotation won; every other redemption, on whichever node, was handed its
    // successor.
    let successors: BTreeSet<&str> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["refresh_token"].as_str().expect("a refresh token")
        })
        .collect();
    assert_eq!(successors.len(), 1, "one successor: {successors:?}");
    let successor = *successors.first().unwrap();
    assert_ne!(successor, first);
    // And it is a live token, which any node rotates in turn.
    token_ok(nodes[1].refresh("web", successor).await).await;
}

#[tokio::test]
async fn fifty_concurrent_redemptions_across_nodes_without_a_window_succeed_exactly_once() {
    // Arrange
    let url = fresh_database("mn_concurrent_no_window").await;
    let engine = seeding_engine(&url).await;
    add_app(&engine, "web", policy(AccessTokenFormat::Jwt, 0)).await;
    add_alice(&engine).await;
    let nodes: [Node; 3] = start_nodes(&url, &[]).await;
    let first = refresh_token_of(&token_ok(nodes[0].password_grant("web").await).await);

    // Act
    let answers = redeem_concurrently(&nodes, "web", &first, 50).await;

    // Assert: exactly one winner; every loser is a replay, refused.
    let (won, lost): (Vec<_>, Vec<_>) = answers
        .iter()
        .partition(|(status, _)| *status == StatusCode::OK);
    assert_eq!(won.len(), 1, "exactly one 200: {answers:?}");
    for (status, body) in &lost {
        assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }
    // A replay outside the window revokes the family: the winner's successor is dead too.
    let successor = refresh_token_of(&won[0].1);
    oauth_error(
        nodes[2].refresh("web", &successor).await,
        400,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn reuse_detected_on_one_node_revokes_the_session_on_the_others() {
    // Arrange: one client per access-token format; no retry window.
    let url = fresh_database("mn_revocation").await;
    let engine = seeding_engine(&url).await;
    add_app(&engine, "web-opaque", policy(AccessTokenFormat::Opaque, 0)).await;
    add_app(&engine, "web-jwt", policy(AccessTokenFormat::Jwt, 0)).await;
    add_alice(&engine).await;
    let [a, b] = start_nodes(&url, &[]).await;

    for client_id in ["web-opaque", "web-jwt"] {
        // A session rotated once on A; its access token is good on B.
        let first = token_ok(a.password_grant(client_id).await).await;
        let second = token_ok(a.refresh(client_id, &refresh_token_of(&first)).await).await;
        let access = access_token_of(&second);
        if client_id == "web-jwt" {
            assert!(
                jwt_claims(&access)["sid"].is_string(),
                "a session-bound JWT"
            );
        } else {
            assert!(!is_jwt(&access), "an opaque token");
        }
        assert_eq!(b.protected(&access).await.status(), StatusCode::OK);

        // Act: the first refresh token again, on A: reuse, and the family is revoked.
        let replayed = a.refresh(client_id, &refresh_token_of(&first)).await;
        oauth_error(replayed, 400, "invalid_grant").await;

        // Assert: B refuses the session's access token and its latest refresh token at once.
        assert_invalid_token(b.protected(&access).await).await;
        let latest = b.refresh(client_id, &refresh_token_of(&second)).await;
        oauth_error(latest, 400, "invalid_grant").await;
    }
}

#[tokio::test]
async fn an_access_token_revoked_on_one_node_is_refused_by_the_others() {
    // Arrange: a client-credentials JWT (no session to revoke: only the revocation list can
    // stop it) and an opaque one, both good on B.
    let url = fresh_database("mn_rfc7009").await;
    let engine = seeding_engine(&url).await;
    add_service(&engine, "svc-jwt", AccessTokenFormat::Jwt).await;
    add_service(&engine, "svc-opaque", AccessTokenFormat::Opaque).await;
    let [a, b] = start_nodes(&url, &[]).await;

    for client_id in ["svc-jwt", "svc-opaque"] {
        let access = access_token_of(&token_ok(a.client_credentials(client_id).await).await);
        assert_eq!(b.protected(&access).await.status(), StatusCode::OK);

        // Act: RFC 7009 revocation on A.
        let revoked = a
            .http
            .post(a.url("/connect/revocation"))
            .header(CONTENT_TYPE, FORM_CONTENT_TYPE)
            .header(AUTHORIZATION, basic_auth(client_id, SERVICE_SECRET))
            .body(form_body(&[("token", &access)]))
            .send()
            .await
            .expect("the revocation request completes");
        assert_eq!(revoked.status(), StatusCode::OK);

        // Assert: A refuses it at once; B within its revocation-list poll interval.
        assert_invalid_token(a.protected(&access).await).await;
        eventually(
            Duration::from_secs(5),
            "B refuses the revoked token",
            async || b.protected(&access).await.status() == StatusCode::UNAUTHORIZED,
        )
        .await;
    }
}

// ---- signing keys across nodes ----

#[tokio::test]
async fn a_key_rotated_through_the_cli_is_published_and_used_by_every_node() {
    // Arrange: three nodes started together on an empty database, re-reading keys every second.
    let url = fresh_database("mn_key_rotation").await;
    let clock = MovedClock::new();
    let (var, file) = clock.env();
    let env = [FAST_KEYS[0], FAST_KEYS[1], (var, &file)];
    let nodes: [Node; 3] = start_nodes(&url, &env).await;
    let first_kids = nodes[0].jwks_kids().await;
    assert_eq!(first_kids.len(), 1, "one first key: {first_kids:?}");
    for node in &nodes {
        assert_eq!(node.jwks_kids().await, first_kids, "the same first key");
    }
    let engine = seeding_engine(&url).await;
    add_service(&engine, "svc", AccessTokenFormat::Jwt).await;
    let old_token = access_token_of(&token_ok(nodes[0].client_credentials("svc").await).await);

    // Act
    let (new_kid, activates_at) = rotate_keys_through_the_cli(&url, 30).await;

    // Assert: every node publishes the new key within a few reload periods …
    for (i, node) in nodes.iter().enumerate() {
        let what = format!("node {i} publishes {new_kid}");
        eventually(Duration::from_secs(10), &what, async || {
            node.jwks_kids().await.contains(&new_kid)
        })
        .await;
    }
    // … keeps signing with the old key until the new one activates …
    let during_lead = access_token_of(&token_ok(nodes[1].client_credentials("svc").await).await);
    let iat = jwt_claims(&during_lead)["iat"].as_i64().unwrap();
    assert!(iat < activates_at, "a 30 s lead outlasts 1 s reloads");
    assert_eq!(jwt_header(&during_lead)["kid"], first_kids[0].as_str());
    // … then signs with it once its clock reaches the activation, with no coordination but
    // the clock, …
    clock.move_to(activates_at);
    for (i, signer) in nodes.iter().enumerate() {
        let what = format!("node {i} signs with {new_kid} once its clock has moved");
        eventually(Duration::from_secs(5), &what, async || {
            let token = access_token_of(&token_ok(signer.client_credentials("svc").await).await);
            jwt_header(&token)["kid"] == new_kid.as_str()
        })
        .await;
    }
    // … and every node accepts what any node signed.
    for (i, signer) in nodes.iter().enumerate() {
        let token = access_token_of(&token_ok(signer.client_credentials("svc").await).await);
        assert_eq!(
            jwt_header(&token)["kid"],
            new_kid.as_str(),
            "node {i} signs"
        );
        for (j, checker) in nodes.iter().enumerate() {
            let status = checker.protected(&token).await.status();
            assert_eq!(status, StatusCode::OK, "signed by node {i}, checked by {j}");
        }
    }
    // The previous key stays published for the tokens it signed.
    for node in &nodes {
        assert!(node.jwks_kids().await.contains(&first_kids[0]));
        assert_eq!(node.protected(&old_token).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_node_accepts_a_token_signed_with_a_key_it_has_not_reloaded_yet() {
    // Arrange: one node re-reading keys every second, one that would wait an hour.
    let url = fresh_database("mn_unknown_kid").await;
    let engine = seeding_engine(&url).await;
    add_service(&engine, "svc", AccessTokenFormat::Jwt).await;
    let clock = MovedClock::new();
    let (var, file) = clock.env();
    let eager = start_node(&url, &[FAST_KEYS[0], FAST_KEYS[1], (var, &file)]).await;
    let lagging = start_node(
        &url,
        &[
            ("KHOA_KEYS__RELOAD_SECS", "3600"),
            ("KHOA_KEYS__ROTATION_LEAD_SECS", "4000"),
            (var, &file),
        ],
    )
    .await;
    // A lead shorter than the lagging node's reload: what an unsafe schedule would do, and
    // what the unknown-kid look-up still absorbs.
    let (new_kid, activates_at) = rotate_keys_through_the_cli(&url, 2).await;
    eventually(
        Duration::from_secs(10),
        "the eager node reloads",
        async || eager.jwks_kids().await.contains(&new_kid),
    )
    .await;
    assert!(
        !lagging.jwks_kids().await.contains(&new_kid),
        "the lagging node has not reloaded on its own"
    );
    clock.move_to(activates_at);
    let mut token = String::new();
    eventually(
        Duration::from_secs(5),
        "the eager node signs with the new key once its clock has moved",
        async || {
            token = access_token_of(&token_ok(eager.client_credentials("svc").await).await);
            jwt_header(&token)["kid"] == new_kid.as_str()
        },
    )
    .await;

    // Act
    let res = lagging.protected(&token).await;

    // Assert: the unknown kid sent it to the database once, and now it knows the key.
    assert_eq!(res.status(), StatusCode::OK);
    assert!(lagging.jwks_kids().await.contains(&new_kid));
}

// ---- the lockout across nodes ----

/// Three failures lock for 60 s; room in each node's Argon2 queue for the whole burst, so that
/// no guess is shed with 503 instead of being counted or refused.
const LOCKOUT: [(&str, &str); 5] = [
    ("KHOA_LOCKOUT__THRESHOLD", "3"),
    ("KHOA_LOCKOUT__BASE_SECS", "60"),
    ("KHOA_LOCKOUT__MAX_SECS", "600"),
    ("KHOA_PASSWORD_HASH__MAX_CONCURRENT", "2"),
    ("KHOA_PASSWORD_HASH__MAX_QUEUE", "64"),
];

#[tokio::test]
async fn a_burst_of_guesses_across_two_nodes_checks_only_threshold_passwords() {
    // Arrange: two nodes on one database, threshold 3, base 60 s, max 600 s.
    let url = fresh_database("mn_lockout_burst").await;
    let engine = seeding_engine(&url).await;
    add_app(&engine, "web", policy(AccessTokenFormat::Jwt, 0)).await;
    add_alice(&engine).await;
    let nodes: [Node; 2] = start_nodes(&url, &LOCKOUT).await;

    // Act: 33 wrong guesses for alice at once, alternating between the nodes.
    let mut guesses = JoinSet::new();
    for i in 0..33 {
        let password = format!("wrong guess {i}");
        let form = [
            ("grant_type", "password"),
            ("client_id", "web"),
            ("username", USER),
            ("password", &password),
        ];
        let req = nodes[i % 2].token_request(&form, None);
        guesses.spawn(async move {
            let res = req.send().await.expect("the token request completes");
            let retry_after = res.headers().get(RETRY_AFTER).map(|v| {
                let secs = v.to_str().expect("Retry-After is ASCII");
                secs.parse::<u64>().expect("Retry-After in seconds")
            });
            (res.status(), retry_after)
        });
    }
    let answers = guesses.join_all().await;

    // Assert: the count lives in PostgreSQL, so both nodes together checked as many
    // passwords as one node taking the guesses one by one (NIST SP 800-63B §5.2.2); the rest
    // were told the first lock, base_secs, not one escalated by the burst.
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::BAD_REQUEST),
        "{answers:?}"
    );
    let checked = answers.iter().filter(|(_, r)| r.is_none()).count();
    assert_eq!(
        checked, 3,
        "passwords checked across both nodes: {answers:?}"
    );
    for (_, retry_after) in answers.iter().filter(|(_, r)| r.is_some()) {
        assert!(
            retry_after.is_some_and(|s| (59..=60).contains(&s)),
            "{retry_after:?}"
        );
    }
    // The right password is refused on either node for that lock.
    for node in &nodes {
        let res = node.password_grant("web").await;
        let secs = res
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            secs.as_deref().is_some_and(|s| ["59", "60"].contains(&s)),
            "{secs:?}"
        );
        oauth_error(res, 400, "invalid_grant").await;
    }
}

// ---- start-up refusals, and the database going away ----

#[tokio::test]
async fn a_node_whose_database_is_unreachable_exits_naming_the_url_without_its_password() {
    // Arrange: a port nobody listens on.
    let port = free_port();
    let url = format!("postgres://khoa:s3cret@127.0.0.1:{port}/khoa");
    let mut cmd = khoa_on_pg(&url);
    cmd.env("KHOA_LISTEN", "127.0.0.1:0");

    // Act
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(15), run(cmd, &["serve"], None))
        .await
        .expect("khoa serve gives up within 15 s");

    // Assert
    assert_eq!(out.status.code(), Some(1), "stderr: {}", out.stderr);
    let redacted = format!("postgres://khoa:***@127.0.0.1:{port}/khoa");
    assert!(out.stderr.contains(&redacted), "{}", out.stderr);
    assert!(
        !out.stderr.contains("s3cret") && !out.stdout.contains("s3cret"),
        "the password is printed: {}",
        out.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_node_on_postgresql_without_a_master_key_refuses_to_start() {
    // Arrange: a database that answers, and no master key (nowhere to put a key file).
    let url = fresh_database("mn_no_master_key").await;
    let mut cmd = khoa_on_pg(&url);
    cmd.env_remove("KHOA_MASTER_KEY")
        .env("KHOA_LISTEN", "127.0.0.1:0");

    // Act
    let out = run(cmd, &["serve"], None).await;

    // Assert
    assert_eq!(out.status.code(), Some(1), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("KHOA_MASTER_KEY"), "{}", out.stderr);
}

#[tokio::test]
async fn a_node_with_another_master_key_refuses_to_start() {
    // Arrange: a database whose signing key is sealed under the deployment's master key.
    let url = fresh_database("mn_other_master_key").await;
    seeding_engine(&url).await;
    let mut cmd = khoa_on_pg(&url);
    cmd.env("KHOA_MASTER_KEY", "ab".repeat(32))
        .env("KHOA_LISTEN", "127.0.0.1:0");

    // Act
    let out = run(cmd, &["serve"], None).await;

    // Assert: it cannot open the signing key, and says so rather than minting a key of its own.
    assert_eq!(out.status.code(), Some(1), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("signing key"), "{}", out.stderr);
}

#[tokio::test]
async fn a_node_answers_503_while_postgresql_is_down_and_serves_again_when_it_is_back() {
    // Arrange: a cluster of its own (stopping the shared one would fail the other tests), a
    // node that waits at most 500 ms for a connection, and a session from before the outage.
    let cluster = Arc::new(blocking(PgCluster::start).await);
    let url = blocking({
        let cluster = cluster.clone();
        move || cluster.create_database("khoa")
    })
    .await;
    let engine = seeding_engine(&url).await;
    add_app(&engine, "web", policy(AccessTokenFormat::Jwt, 5)).await;
    add_alice(&engine).await;
    drop(engine);
    let mut node = start_node(&url, &[("KHOA_DATABASE__BUSY_TIMEOUT_MS", "500")]).await;
    assert_eq!(node.status_of("/readyz").await, StatusCode::OK);
    let before = token_ok(node.password_grant("web").await).await;

    // Act 1: PostgreSQL goes away.
    blocking({
        let cluster = cluster.clone();
        move || cluster.stop()
    })
    .await;

    // Assert: not ready, a token request is a clean 503 a client may retry, the node lives.
    eventually(Duration::from_secs(10), "/readyz fails", async || {
        node.status_of("/readyz").await == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let asked = Instant::now();
    let res = node.password_grant("web").await;
    let took = asked.elapsed();
    let retry_after = res.headers().get(RETRY_AFTER).cloned();
    oauth_error(res, 503, "temporarily_unavailable").await;
    assert!(retry_after.is_some(), "503 carries Retry-After");
    assert!(
        took < Duration::from_secs(5),
        "a wait, not a hang: {took:?}"
    );
    let res = node.refresh("web", &refresh_token_of(&before)).await;
    oauth_error(res, 503, "temporarily_unavailable").await;
    assert_eq!(node.status_of("/healthz").await, StatusCode::OK);
    node.assert_still_running();

    // Act 2: PostgreSQL is back.
    blocking({
        let cluster = cluster.clone();
        move || cluster.start_again()
    })
    .await;

    // Assert: the same process serves again, sessions from before included.
    eventually(Duration::from_secs(20), "tokens again", async || {
        node.password_grant("web").await.status() == StatusCode::OK
    })
    .await;
    assert_eq!(node.status_of("/readyz").await, StatusCode::OK);
    token_ok(node.refresh("web", &refresh_token_of(&before)).await).await;
    node.assert_still_running();

    drop(node);
    blocking(move || drop(cluster)).await;
}

// ---- nothing secret at rest ----

/// Every value of every column of every table in the database's public schema, as text
/// (`bytea` as PostgreSQL prints it: `\x` and hex), each with its `table.column`.
async fn stored_values(database_url: &str) -> Vec<(String, String)> {
    let mut conn = PgConnection::connect(database_url)
        .await
        .expect("a connection to the test database");
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&mut conn)
    .await
    .expect("the list of columns");
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let mut values = Vec::new();
    for (table, column) in columns {
        let sql = format!("SELECT {}::text FROM {}", quote(&column), quote(&table));
        let rows: Vec<Option<String>> = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_all(&mut conn)
            .await
            .expect("a column's values");
        let name = format!("{table}.{column}");
        values.extend(rows.into_iter().flatten().map(|v| (name.clone(), v)));
    }
    values
}

#[tokio::test]
async fn nothing_secret_is_stored_in_the_clear_in_postgresql() {
    // Arrange: an opaque-token app with refresh, an opaque-token service with a known secret,
    // alice, and a partner of the encrypted dialect.
    let url = fresh_database("mn_at_rest").await;
    let engine = seeding_engine(&url).await;
    add_app(&engine, "at-rest-app", policy(AccessTokenFormat::Opaque, 5)).await;
    add_service(&engine, "at-rest-service", AccessTokenFormat::Opaque).await;
    add_alice(&engine).await;
    let partner_key = engine
        .tokens()
        .partners()
        .create("AT-REST-PARTNER", "at rest", "at-rest-service", None)
        .await
        .expect("the partner is created")
        .to_string();
    let [node] = start_nodes(&url, &[]).await;

    // Act: a session, one rotation (a sealed successor is stored), a service token.
    let first = token_ok(node.password_grant("at-rest-app").await).await;
    let second = token_ok(node.refresh("at-rest-app", &refresh_token_of(&first)).await).await;
    let service = token_ok(node.client_credentials("at-rest-service").await).await;
    let stored = stored_values(&url).await;

    // Assert: the scan sees what is stored in plain text, and bytea columns as hex …
    let holds = |needle: &str| stored.iter().any(|(_, v)| v.contains(needle));
    for plain in [USER, "at-rest-service", "AT-REST-PARTNER"] {
        assert!(holds(plain), "the scan finds {plain}");
    }
    assert!(
        stored
            .iter()
            .any(|(col, v)| col == "refresh_tokens.successor_sealed" && v.starts_with("\\x")),
        "the scan reads bytea columns"
    );
    // … and no secret, neither as text nor as the hex of its bytes.
    let secrets = [
        ("the first refresh token", refresh_token_of(&first)),
        ("the rotated refresh token", refresh_token_of(&second)),
        ("the first opaque access token", access_token_of(&first)),
        ("the rotated opaque access token", access_token_of(&second)),
        ("the service's access token", access_token_of(&service)),
        ("alice's password", PASSWORD.to_owned()),
        ("the client secret", SERVICE_SECRET.to_owned()),
        ("the partner key", partner_key),
        ("the master key", MASTER_KEY.to_owned()),
    ];
    for (what, secret) in &secrets {
        let hex = hex::encode(secret);
        let found: BTreeSet<&str> = stored
            .iter()
            .filter(|(_, v)| v.contains(secret.as_str()) || v.contains(&hex))
            .map(|(col, _)| col.as_str())
            .collect();
        assert!(
            found.is_empty(),
            "{what} is stored in the clear in {found:?}"
        );
    }
}
