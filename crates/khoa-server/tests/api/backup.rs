//! `khoa backup --to FILE` against a real `khoa serve` under refresh load: the copy is taken
//! while the server writes, passes `PRAGMA integrity_check`, and a new server started on it
//! (with the same master key) accepts the tokens issued before the backup and knows none
//! issued after. And the refusals: an existing target, a missing database, PostgreSQL.

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::{Connection, SqliteConnection};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::process::Child;
use tokio::task::{JoinHandle, JoinSet};

use crate::cli::{collect_stderr, fails, free_port, khoa_on, migrated, ok, run};
use crate::helpers::{FORM_CONTENT_TYPE, PROTECTED_PATH, TOKEN_PATH, form_body};

const ISSUER: &str = "https://khoa.backup.test";
const SCOPE: &str = "read offline_access";
const PASSWORD: &str = "backup-test password";
const USER: &str = "an@backup.test";
/// Opaque access tokens are looked up in the database, JWTs checked against the signing key
/// (encrypted under the master key): the copy must carry both.
const CLIENTS: [(&str, &str); 2] = [("bk-opaque", "opaque"), ("bk-jwt", "jwt")];
const LOAD_TASKS: usize = 4;
const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// A `khoa serve` process on `dir`, killed when dropped.
struct Server {
    api: Api,
    process: Child,
    log: Option<JoinHandle<String>>,
}

/// The requests the tests send to a server at `base` (`http://127.0.0.1:PORT`).
#[derive(Clone)]
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Server {
    async fn start(dir: &Path, http: &reqwest::Client) -> Server {
        for _ in 0..3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let mut process = khoa_on(dir)
                .env("KHOA_LISTEN", &addr)
                .env("KHOA_ISSUER", ISSUER)
                .arg("serve")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("khoa serve starts");
            let log = Some(collect_stderr(&mut process));
            let mut server = Server {
                api: Api {
                    base: format!("http://{addr}"),
                    http: http.clone(),
                },
                process,
                log,
            };
            let deadline = Instant::now() + DEADLINE;
            loop {
                if let Ok(res) = http
                    .get(format!("{}/healthz", server.api.base))
                    .send()
                    .await
                    && res.status() == StatusCode::OK
                {
                    return server;
                }
                if server.process.try_wait().unwrap().is_some() {
                    let log = server.log.take().unwrap().await.unwrap_or_default();
                    // Another process took the port between the probe and the bind: again.
                    assert!(log.contains("cannot listen"), "khoa serve exited: {log}");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "khoa serve on {addr} is not live"
                );
                tokio::time::sleep(POLL).await;
            }
        }
        panic!("khoa serve found no free port");
    }

    async fn stop(mut self) {
        self.process.start_kill().expect("the server is stopped");
        self.process.wait().await.expect("the server's status");
    }
}

impl Api {
    async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}{TOKEN_PATH}", self.base))
            .header(reqwest::header::CONTENT_TYPE, FORM_CONTENT_TYPE)
            .body(form_body(form))
            .send()
            .await
            .expect("the token endpoint answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn login(&self, client_id: &str) -> Tokens {
        let form = [
            ("grant_type", "password"),
            ("client_id", client_id),
            ("username", USER),
            ("password", PASSWORD),
            ("scope", SCOPE),
        ];
        let (status, body) = self.token(&form).await;
        assert_eq!(status, StatusCode::OK, "login: {body}");
        Tokens::of(client_id, &body)
    }

    async fn refresh(&self, client_id: &str, token: &str) -> StatusCode {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", token),
        ];
        self.token(&form).await.0
    }

    async fn protected(&self, access: &str) -> StatusCode {
        self.http
            .get(format!("{}{PROTECTED_PATH}", self.base))
            .bearer_auth(access)
            .send()
            .await
            .expect("the protected resource answers")
            .status()
    }
}

struct Tokens {
    client_id: &'static str,
    access: String,
    refresh: String,
}

impl Tokens {
    fn of(client_id: &str, body: &Value) -> Tokens {
        let client_id = CLIENTS.iter().find(|(c, _)| *c == client_id).unwrap().0;
        Tokens {
            client_id,
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// One task of the load: logs in once, then refreshes its chain until `stop`. Every refresh
/// must succeed; returns the refusal it met, if any.
async fn refresh_chain(
    api: Api,
    client_id: &'static str,
    stop: Arc<AtomicBool>,
    refreshed: Arc<AtomicUsize>,
) -> Option<String> {
    let mut tokens = api.login(client_id).await;
    while !stop.load(Ordering::Relaxed) {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", tokens.refresh.as_str()),
        ];
        let (status, body) = api.token(&form).await;
        if status != StatusCode::OK {
            return Some(format!("a refresh during the load got {status}: {body}"));
        }
        tokens = Tokens::of(client_id, &body);
        refreshed.fetch_add(1, Ordering::Relaxed);
    }
    None
}

/// `PRAGMA integrity_check` on `path`.
async fn integrity_check(path: &Path) -> String {
    let url = format!("sqlite://{}", path.display());
    let mut conn = SqliteConnection::connect(&url)
        .await
        .expect("the copy opens");
    let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .expect("PRAGMA integrity_check runs");
    conn.close().await.unwrap();
    rows.into_iter()
        .map(|(r,)| r)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls until `counter` has grown past `than`, within [`DEADLINE`].
async fn until_above(counter: &AtomicUsize, than: usize, what: &str) {
    let deadline = Instant::now() + DEADLINE;
    while counter.load(Ordering::Relaxed) <= than {
        assert!(Instant::now() < deadline, "{what}: no progress");
        tokio::time::sleep(POLL).await;
    }
}

async fn seed(dir: &Path) {
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
        ];
        ok(dir, &args, None).await;
    }
    ok(dir, &["user", "add", USER], Some(&format!("{PASSWORD}\n"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_serves_the_tokens_issued_before_it() {
    // Arrange: a served database with tokens issued, and refreshes running.
    let live = migrated().await;
    seed(live.path()).await;
    let http = crate::helpers::http_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let server = Server::start(live.path(), &http).await;
    let mut before = Vec::new();
    for (client_id, _) in CLIENTS {
        before.push(server.api.login(client_id).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let refreshed = Arc::new(AtomicUsize::new(0));
    let mut load = JoinSet::new();
    for t in 0..LOAD_TASKS {
        let (client_id, _) = CLIENTS[t % CLIENTS.len()];
        let task = refresh_chain(
            server.api.clone(),
            client_id,
            stop.clone(),
            refreshed.clone(),
        );
        load.spawn(task);
    }
    until_above(&refreshed, 20, "the load before the backup").await;

    // Act: the backup, while the refreshes go on.
    let copies = tempfile::tempdir().unwrap();
    let target = copies.path().join("khoa.db");
    let during = refreshed.load(Ordering::Relaxed);
    let out = run(
        khoa_on(live.path()),
        // Small steps: many of them, each after the writer has committed more refreshes.
        &[
            "backup",
            "--to",
            target.to_str().unwrap(),
            "--step-pages",
            "2",
        ],
        None,
    )
    .await;
    let after_backup = refreshed.load(Ordering::Relaxed);
    until_above(&refreshed, after_backup + 20, "the load after the backup").await;
    // Issued after the copy was taken: the copy must not know it.
    let later = server.api.login(CLIENTS[0].0).await;
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = load.join_all().await.into_iter().flatten().collect();
    server.stop().await;

    // Assert: it succeeded, said what it wrote and what else to keep, and the load never broke.
    assert!(out.status.success(), "khoa backup failed: {}", out.stderr);
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        after_backup > during,
        "the server answered refreshes while the backup ran ({during} → {after_backup})"
    );
    eprintln!(
        "{} refreshes answered while the backup ran: {}",
        after_backup - during,
        out.stdout.lines().next().unwrap_or_default()
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    let size = std::fs::metadata(&target).unwrap().len();
    let written = target.canonicalize().unwrap();
    assert!(
        lines[0].contains(&written.display().to_string())
            && lines[0].contains(&format!("{size} bytes")),
        "{}",
        lines[0]
    );
    let steps: u32 = lines[0]
        .split(" steps")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the number of steps");
    assert!(
        steps >= 10,
        "the copy went in steps under load: {}",
        lines[0]
    );
    let key_file = live.path().join("master.key").canonicalize().unwrap();
    assert!(
        lines[1].contains(&key_file.display().to_string()) && lines[1].contains("cannot decrypt"),
        "{}",
        lines[1]
    );
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        !out.stdout.contains(key.trim()) && !out.stderr.contains(key.trim()),
        "the master key itself is never printed"
    );
    assert_eq!(integrity_check(&target).await, "ok");
    let leftovers: Vec<_> = std::fs::read_dir(copies.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        leftovers,
        ["khoa.db"],
        "no temporary file, no -wal beside it"
    );

    // Assert: restored with its key, the copy serves what was issued before it.
    std::fs::copy(&key_file, copies.path().join("master.key")).unwrap();
    let restored = Server::start(copies.path(), &http).await;
    for tokens in &before {
        let who = tokens.client_id;
        let status = restored.api.protected(&tokens.access).await;
        assert_eq!(status, StatusCode::OK, "{who}: an access token from before");
        let status = restored.api.refresh(who, &tokens.refresh).await;
        assert_eq!(status, StatusCode::OK, "{who}: a refresh token from before");
    }
    let status = restored.api.protected(&later.access).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an opaque token issued after the backup is not in the copy"
    );
    restored.stop().await;
}

#[tokio::test]
async fn an_existing_backup_file_is_kept_unless_forced() {
    let dir = migrated().await;
    let target = dir.path().join("backup.db");
    std::fs::write(&target, "an older backup").unwrap();
    let to = target.to_str().unwrap();

    let err = fails(dir.path(), &["backup", "--to", to], None).await;

    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "an older backup");
    let out = ok(dir.path(), &["backup", "--to", to, "--force"], None).await;
    assert!(out.starts_with("wrote "), "{out}");
    assert_eq!(integrity_check(&target).await, "ok");
}

#[tokio::test]
async fn a_missing_database_is_refused_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("backup.db");

    let err = fails(
        dir.path(),
        &["backup", "--to", target.to_str().unwrap()],
        None,
    )
    .await;

    assert!(err.contains("no database"), "{err}");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(names.is_empty(), "nothing created: {names:?}");
}

#[tokio::test]
async fn a_postgres_database_is_referred_to_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("backup.dump");
    let mut cmd = khoa_on(dir.path());
    cmd.env(
        "KHOA_DATABASE_URL",
        "postgres://khoa:pg-password-never-shown@127.0.0.1:1/khoa",
    );

    let out = run(cmd, &["backup", "--to", target.to_str().unwrap()], None).await;

    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let err = out.stderr;
    assert!(
        err.contains("pg_dump --format=custom") && err.contains("pg_restore"),
        "{err}"
    );
    assert!(!err.contains("pg-password-never-shown"), "{err}");
    assert!(!target.exists());
}
