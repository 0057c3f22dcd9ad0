//! Crash safety (DESIGN "Guarantees": *a token the client received is durable … a crash
//! (kill -9) loses nothing that was answered*): the real `khoa serve` on a SQLite file under
//! sustained login and refresh load, killed with SIGKILL mid-load several times and restarted
//! on the same database each time.
//!
//! Virtual clients each log in (the password grant, which starts a refresh family) and keep
//! refreshing their own chain, now and then logging in again to start another one. Only a
//! response read in full — status 200 and the whole JSON body — counts as issued: whatever
//! was in flight when the process died does not. After each restart the test checks what the
//! guarantees promise for what the clients actually hold:
//!
//! - every access token received is accepted by `/api/protected-resource` (the access TTL, an
//!   hour, outlives the test, so none has expired);
//! - the latest refresh token each chain received is redeemable. A refresh whose answer was
//!   lost may already have rotated that token on the server (committed, then killed before the
//!   answer left). The client cannot know; it retries with what it holds, and the retry window
//!   (DESIGN: "a retry inside a short, configurable window … gets that same successor, not a
//!   lockout") promises the retry succeeds with the successor it never saw. So the redemption
//!   must succeed whether or not the lost rotation was committed, provided it comes inside the
//!   client's reuse window ([`REUSE_WINDOW`], chosen to cover a restart on a loaded machine);
//! - no token string (access or refresh) was ever received twice: a lost answer's successor,
//!   handed out again on the retry, was never received before;
//! - the file passes `PRAGMA integrity_check` after every kill.
//!
//! At the end, once the window has passed, every refresh token the verification redeemed is
//! presented a second time: each must be refused, and (RFC 9700 §4.14.2, reuse outside the
//! window) its family revoked, so the chain's current token is refused as well.

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::{Connection, SqliteConnection};
use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::Child;
use tokio::task::{JoinHandle, JoinSet};

use crate::cli::{collect_stderr, free_port, khoa_on, ok};
use crate::helpers::{FORM_CONTENT_TYPE, PROTECTED_PATH, TOKEN_PATH, form_body};

/// Kill-and-restart rounds.
const ROUNDS: usize = 4;
/// Concurrent virtual clients during the load.
const VIRTUAL_CLIENTS: usize = 6;
/// The load of a round lasts a random time in this range (milliseconds) before the kill.
const LOAD_MS: std::ops::Range<u64> = 500..2000;
/// One operation in this many is a fresh login (a new chain); the others refresh.
const LOGIN_EVERY: u64 = 8;
/// The public clients' retry window (seconds): longer than a restart plus the verification,
/// so that a chain whose last answer was lost is retried inside it.
const REUSE_WINDOW: u64 = 10;
/// Requests in flight at once while verifying.
const VERIFY_CONCURRENCY: usize = 8;
/// The issuer, fixed: each restart listens on a new port, and JWTs must outlive it.
const ISSUER: &str = "https://khoa.crash.test";
const SCOPE: &str = "read offline_access";
const PASSWORD: &str = "crash-test password";
/// Public clients, one per access-token format: opaque tokens are looked up in the database,
/// JWTs are checked against the signing key, which must survive as well.
const CLIENTS: [(&str, &str); 2] = [("crash-opaque", "opaque"), ("crash-jwt", "jwt")];
const USERS: [&str; 3] = ["ana@crash.test", "binh@crash.test", "chi@crash.test"];
/// A confidential client that may introspect, to tell which held tokens the server rotated.
const INTROSPECTOR: &str = "crash-introspector";
const INTROSPECTOR_SECRET: &str = "crash-introspector-secret-0123456789abcdef";
const INTROSPECTION_PATH: &str = "/connect/introspect";
/// Beside the database: the seconds the server's clock runs ahead (`danger_clock_file`).
const CLOCK_FILE: &str = "clock";
const START_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

// ---- randomness: a small seeded generator, the seed printed for a replay ----

struct Rng(u64);

impl Rng {
    fn from_env_or_clock() -> Self {
        let seed = std::env::var("KHOA_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                t.as_nanos() as u64
            });
        eprintln!("crash test seed: {seed} (replay with KHOA_CRASH_SEED={seed})");
        Rng(seed)
    }

    /// splitmix64
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn in_range(&mut self, r: std::ops::Range<u64>) -> u64 {
        r.start + self.next() % (r.end - r.start)
    }
}

// ---- the server process ----

/// A running `khoa serve` on `dir/khoa.db`, killed (SIGKILL) when dropped.
struct Server {
    base: String,
    process: Child,
    log: Option<JoinHandle<String>>,
}

impl Server {
    /// `khoa serve` on the test directory's database, answering `/healthz`.
    async fn start(dir: &Path, http: &reqwest::Client) -> Server {
        let mut refused = Vec::new();
        for _ in 0..3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let mut process = khoa_on(dir)
                .env("KHOA_LISTEN", &addr)
                .env("KHOA_ISSUER", ISSUER)
                .env("KHOA_DANGER_CLOCK_FILE", dir.join(CLOCK_FILE))
                .arg("serve")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("khoa serve starts");
            let log = Some(collect_stderr(&mut process));
            let mut server = Server {
                base: format!("http://{addr}"),
                process,
                log,
            };
            match server.until_live(http).await {
                Ok(()) => return server,
                // Another process took the port between our probe and the server's bind.
                Err(log) if log.contains("cannot listen") => refused.push(log),
                Err(log) => panic!("khoa serve on {addr} did not come up: {log}"),
            }
        }
        panic!("khoa serve found no free port: {}", refused.join("\n---\n"));
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn until_live(&mut self, http: &reqwest::Client) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(res) = http.get(self.url("/healthz")).send().await
                && res.status() == StatusCode::OK
            {
                return Ok(());
            }
            if let Some(status) = self.process.try_wait().expect("the server's status") {
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

    async fn take_log(&mut self) -> String {
        match self.log.take() {
            Some(reader) => reader.await.unwrap_or_default(),
            None => String::new(),
        }
    }

    /// SIGKILL, and wait until the process is gone; its log, to explain a later failure.
    async fn kill_9(mut self) -> String {
        self.process.start_kill().expect("SIGKILL is delivered");
        let status = self
            .process
            .wait()
            .await
            .expect("the killed server's status");
        assert!(!status.success(), "the server was killed, it did not exit");
        self.take_log().await
    }
}

// ---- what the clients received ----

/// One refresh family as its client knows it.
struct Chain {
    client_id: &'static str,
    /// The latest refresh token the client received for it.
    latest: String,
    /// The last refresh of `latest` got no complete answer: the server may have rotated it.
    cut: bool,
}

/// Every token string received by any client, to prove none was received twice.
#[derive(Default)]
struct Received {
    tokens: HashSet<String>,
    /// Access tokens, to check after each restart.
    access: Vec<String>,
    duplicates: Vec<String>,
}

impl Received {
    /// Records a full 200 token response; its refresh token.
    fn record(&mut self, body: &Value) -> String {
        let access = body["access_token"].as_str().expect("an access_token");
        let refresh = body["refresh_token"].as_str().expect("a refresh_token");
        for token in [access, refresh] {
            if !self.tokens.insert(token.to_owned()) {
                // The prefix only: enough to tell tokens apart in a report.
                self.duplicates.push(token.chars().take(12).collect());
            }
        }
        self.access.push(access.to_owned());
        refresh.to_owned()
    }
}

/// What a token request came to, as far as the client can tell.
enum Answer {
    /// 200 with the whole body read.
    Issued(Value),
    /// Load shed (429/503): nothing happened, the same request may be sent again.
    Shed,
    /// Any other complete answer: a failure of the test.
    Refused(StatusCode, String),
    /// No complete answer: the connection broke (the server died) or the body was cut.
    Lost,
}

async fn token_request(http: &reqwest::Client, base: &str, form: &[(&str, &str)]) -> Answer {
    let sent = http
        .post(format!("{base}{TOKEN_PATH}"))
        .header(reqwest::header::CONTENT_TYPE, FORM_CONTENT_TYPE)
        .body(form_body(form))
        .send()
        .await;
    let Ok(res) = sent else { return Answer::Lost };
    let status = res.status();
    let Ok(body) = res.bytes().await else {
        return Answer::Lost;
    };
    match status {
        StatusCode::OK => match serde_json::from_slice::<Value>(&body) {
            Ok(v) => Answer::Issued(v),
            Err(_) => Answer::Lost,
        },
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Answer::Shed,
        s => Answer::Refused(s, String::from_utf8_lossy(&body).into_owned()),
    }
}

fn login_form<'a>(client_id: &'a str, user: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("grant_type", "password"),
        ("client_id", client_id),
        ("username", user),
        ("password", PASSWORD),
        ("scope", SCOPE),
    ]
}

fn refresh_form<'a>(client_id: &'a str, token: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("grant_type", "refresh_token"),
        ("client_id", client_id),
        ("refresh_token", token),
    ]
}

/// What every virtual client of a round shares.
#[derive(Clone)]
struct Load {
    http: reqwest::Client,
    /// The server's `http://127.0.0.1:PORT`.
    base: String,
    received: Arc<Mutex<Received>>,
    /// Set once the server has been killed.
    stop: Arc<AtomicBool>,
    /// Requests that got no complete answer: in flight at the kill, or sent after it.
    lost: Arc<AtomicUsize>,
}

/// One virtual client: logs in and refreshes its own chains until `stop`. Returns its chains
/// (the current one last) and any unexpected refusal.
async fn virtual_client(
    load: Load,
    mut chains: Vec<Chain>,
    client_id: &'static str,
    user: &'static str,
    seed: u64,
) -> (Vec<Chain>, Vec<String>) {
    let Load {
        http,
        base,
        received,
        stop,
        lost,
    } = load;
    let mut rng = Rng(seed);
    let mut failures = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let login = chains.is_empty() || rng.next().is_multiple_of(LOGIN_EVERY);
        let answer = if login {
            token_request(&http, &base, &login_form(client_id, user)).await
        } else {
            let chain = chains.last().unwrap();
            let form = refresh_form(chain.client_id, &chain.latest);
            token_request(&http, &base, &form).await
        };
        match answer {
            Answer::Issued(body) => {
                let refresh = received.lock().unwrap().record(&body);
                if login {
                    chains.push(Chain {
                        client_id,
                        latest: refresh,
                        cut: false,
                    });
                } else {
                    let chain = chains.last_mut().unwrap();
                    chain.latest = refresh;
                    chain.cut = false;
                }
            }
            Answer::Refused(status, body) => {
                let what = if login { "login" } else { "refresh" };
                failures.push(format!("a {what} during the load got {status}: {body}"));
                break;
            }
            // Back off a little: the server is shedding, or dead until the kill is noticed.
            Answer::Shed => tokio::time::sleep(Duration::from_millis(5)).await,
            Answer::Lost => {
                lost.fetch_add(1, Ordering::Relaxed);
                if !login {
                    chains.last_mut().unwrap().cut = true;
                }
                tokio::time::sleep(Duration::from_millis(5)).await
            }
        }
    }
    (chains, failures)
}

/// `PRAGMA integrity_check` on the database file, with no server running.
async fn integrity_check(dir: &Path) -> String {
    let url = format!("sqlite://{}", dir.join("khoa.db").display());
    let mut conn = SqliteConnection::connect(&url)
        .await
        .expect("the database opens after a kill");
    let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .expect("PRAGMA integrity_check runs");
    conn.close().await.expect("the check's connection closes");
    rows.into_iter()
        .map(|(r,)| r)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The status of `GET /api/protected-resource` with each of `tokens`; those not 200.
async fn rejected_access_tokens(
    http: &reqwest::Client,
    server: &Server,
    tokens: &[String],
) -> Vec<(StatusCode, String)> {
    let url = server.url(PROTECTED_PATH);
    let mut rejected = Vec::new();
    for batch in tokens.chunks(VERIFY_CONCURRENCY) {
        let mut checks = JoinSet::new();
        for token in batch {
            let req = http.get(&url).bearer_auth(token);
            let prefix: String = token.chars().take(12).collect();
            checks.spawn(async move {
                let status = req.send().await.expect("the resource answers").status();
                (status, prefix)
            });
        }
        rejected.extend(
            checks
                .join_all()
                .await
                .into_iter()
                .filter(|(s, _)| *s != StatusCode::OK),
        );
    }
    rejected
}

/// Whether RFC 7662 introspection still calls `token` active (a refresh token is not once
/// it has been rotated).
async fn is_active(http: &reqwest::Client, server: &Server, token: &str) -> bool {
    let res = http
        .post(server.url(INTROSPECTION_PATH))
        .basic_auth(INTROSPECTOR, Some(INTROSPECTOR_SECRET))
        .header(reqwest::header::CONTENT_TYPE, FORM_CONTENT_TYPE)
        .body(form_body(&[("token", token)]))
        .send()
        .await
        .expect("the introspection answers");
    assert_eq!(res.status(), StatusCode::OK, "introspection");
    let body: Value = res.json().await.expect("an introspection body");
    body["active"].as_bool().expect("`active` is a boolean")
}

/// Redeems each chain's latest refresh token once; the chains move on to the successors, and
/// the redeemed tokens are returned (with their chains' indices) for the replay at the end.
async fn redeem_every_chain(
    http: &reqwest::Client,
    server: &Server,
    chains: &mut [Chain],
    received: &Mutex<Received>,
) -> Vec<(usize, String)> {
    let mut spent = Vec::new();
    for (batch_start, batch) in chains
        .chunks_mut(VERIFY_CONCURRENCY)
        .enumerate()
        .map(|(i, b)| (i * VERIFY_CONCURRENCY, b))
    {
        let mut redemptions = JoinSet::new();
        for (i, chain) in batch.iter().enumerate() {
            let (http, base) = (http.clone(), server.base.clone());
            let (client_id, token) = (chain.client_id, chain.latest.clone());
            redemptions.spawn(async move {
                let answer = token_request(&http, &base, &refresh_form(client_id, &token)).await;
                (i, token, answer)
            });
        }
        for (i, token, answer) in redemptions.join_all().await {
            match answer {
                Answer::Issued(body) => {
                    batch[i].latest = received.lock().unwrap().record(&body);
                    spent.push((batch_start + i, token));
                }
                Answer::Refused(status, body) => panic!(
                    "the latest refresh token a chain received is not redeemable after the \
                     restart: {status} {body}"
                ),
                Answer::Shed | Answer::Lost => {
                    panic!("the restarted server did not answer a refresh")
                }
            }
        }
    }
    spent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_answered_survives_kill_9_mid_load_and_the_database_stays_intact() {
    // Arrange: the clients and users, through the CLI, on the database the server will use.
    let dir = crate::cli::migrated().await;
    let window = REUSE_WINDOW.to_string();
    for (client_id, format) in CLIENTS {
        let args = [
            "client",
            "add",
            client_id,
            "--public",
            "--grant-types",
            "password,refresh_token",
            "--scopes",
            SCOPE,
            "--token-format",
            format,
            "--reuse-window",
            &window,
        ];
        ok(dir.path(), &args, None).await;
    }
    ok(
        dir.path(),
        &["client", "add", INTROSPECTOR, "--secret-stdin"],
        Some(&format!("{INTROSPECTOR_SECRET}\n")),
    )
    .await;
    for user in USERS {
        ok(
            dir.path(),
            &["user", "add", user],
            Some(&format!("{PASSWORD}\n")),
        )
        .await;
    }
    let http = crate::helpers::http_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client");
    let mut rng = Rng::from_env_or_clock();
    let received = Arc::new(Mutex::new(Received::default()));
    let mut chains: Vec<Vec<Chain>> = (0..VIRTUAL_CLIENTS).map(|_| Vec::new()).collect();
    // Every refresh token redeemed by a verification: (virtual client, chain, token).
    let mut spent: Vec<(usize, usize, String)> = Vec::new();
    let mut retried_in_window = 0;
    let mut server = Server::start(dir.path(), &http).await;

    for round in 1..=ROUNDS {
        // Act: load for a random while, then SIGKILL with requests in flight.
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Load {
            http: http.clone(),
            base: server.base.clone(),
            received: received.clone(),
            stop: stop.clone(),
            lost: Arc::new(AtomicUsize::new(0)),
        };
        let mut load = JoinSet::new();
        for (v, held) in chains.drain(..).enumerate() {
            let (client_id, _) = CLIENTS[v % CLIENTS.len()];
            let user = USERS[v % USERS.len()];
            let client = virtual_client(shared.clone(), held, client_id, user, rng.next());
            load.spawn(async move {
                let (held, failed) = client.await;
                (v, held, failed)
            });
        }
        let load_for = Duration::from_millis(rng.in_range(LOAD_MS));
        tokio::time::sleep(load_for).await;
        let log = server.kill_9().await;
        stop.store(true, Ordering::Relaxed);
        let mut results: Vec<_> = load.join_all().await;
        // `join_all` gives completion order: put each client's chains back in its place.
        results.sort_by_key(|(v, _, _)| *v);
        let mut failures = Vec::new();
        for (_, held, failed) in results {
            chains.push(held);
            failures.extend(failed);
        }
        assert!(failures.is_empty(), "round {round}: {failures:?}\n{log}");
        let issued = received.lock().unwrap().access.len();
        eprintln!(
            "round {round}: killed after {load_for:?}; {issued} token responses received so \
             far, {} chains; {} requests without a complete answer",
            chains.iter().map(Vec::len).sum::<usize>(),
            shared.lost.load(Ordering::Relaxed)
        );
        assert!(issued > 0, "round {round}: the load issued nothing\n{log}");

        // Assert: the file is intact, and after a restart everything received still holds.
        let integrity = integrity_check(dir.path()).await;
        assert_eq!(
            integrity, "ok",
            "round {round}: integrity_check after kill -9"
        );
        server = Server::start(dir.path(), &http).await;
        let access = received.lock().unwrap().access.clone();
        let rejected = rejected_access_tokens(&http, &server, &access).await;
        assert!(
            rejected.is_empty(),
            "round {round}: {} of {} access tokens received are no longer accepted: {:?}",
            rejected.len(),
            access.len(),
            &rejected[..rejected.len().min(5)]
        );
        // The chains whose last refresh the kill cut: those the server had rotated are redeemed
        // below through the retry window (counted, to show that path is exercised).
        let (mut cut, mut rotated) = (0, 0);
        for chain in chains.iter_mut().flatten().filter(|c| c.cut) {
            cut += 1;
            if !is_active(&http, &server, &chain.latest).await {
                rotated += 1;
            }
            chain.cut = false;
        }
        eprintln!(
            "round {round}: {cut} chains had a refresh cut by the kill; the server had \
             committed {rotated} of them, which the retry window must now honour"
        );
        retried_in_window += rotated;
        for (v, held) in chains.iter_mut().enumerate() {
            let redeemed = redeem_every_chain(&http, &server, held, &received).await;
            spent.extend(redeemed.into_iter().map(|(c, t)| (v, c, t)));
        }
        let duplicates = &received.lock().unwrap().duplicates;
        assert!(
            duplicates.is_empty(),
            "round {round}: token strings received twice (prefixes): {duplicates:?}"
        );
    }

    eprintln!("{retried_in_window} lost rotations were redeemed again inside the window");

    // Assert: outside the window, a second redemption of each is refused, and the reuse
    // revokes its family (the chain's current token is refused too).
    // The server's clock moves past the window (read at its start: no sleeping for it).
    std::fs::write(dir.path().join(CLOCK_FILE), (REUSE_WINDOW + 2).to_string()).unwrap();
    server.kill_9().await;
    let server = Server::start(dir.path(), &http).await;
    for (v, c, token) in &spent {
        let client_id = chains[*v][*c].client_id;
        match token_request(&http, &server.base, &refresh_form(client_id, token)).await {
            Answer::Refused(StatusCode::BAD_REQUEST, body) => {
                assert!(body.contains("invalid_grant"), "{body}")
            }
            Answer::Issued(_) => panic!("a spent refresh token was redeemed again"),
            _ => panic!("a replayed refresh token got no invalid_grant answer"),
        }
    }
    for chain in chains.iter().flatten() {
        let answer = token_request(
            &http,
            &server.base,
            &refresh_form(chain.client_id, &chain.latest),
        )
        .await;
        assert!(
            matches!(answer, Answer::Refused(StatusCode::BAD_REQUEST, _)),
            "a family whose token was replayed outside the window is revoked"
        );
    }
    server.kill_9().await;
    assert_eq!(
        integrity_check(dir.path()).await,
        "ok",
        "after the final kill"
    );
}
