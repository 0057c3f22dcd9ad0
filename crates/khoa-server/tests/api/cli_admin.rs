//! The `khoa` binary as an operator drives it: `serve`, start-up refusals of an invalid
//! configuration, `migrate`, and the `client`, `user` and `keys` verbs, each checked by its
//! exit code, its output and what a server on the same database then does.

use reqwest::StatusCode;
use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cli::{collect_stderr, fails, field, free_port, khoa, khoa_on, migrated, ok, run};
use crate::helpers::{
    FORM_CONTENT_TYPE, access_token_of, form_body, jwt_header, oauth_error, spawn_app_in,
    spawn_app_in_with, token_ok,
};

/// `client add` for the public client `web` that alice's password grant goes through.
const ADD_WEB_CLIENT: [&str; 8] = [
    "client",
    "add",
    "web",
    "--public",
    "--grant-types",
    "password,refresh_token",
    "--scopes",
    "read offline_access",
];

fn words(s: &str) -> BTreeSet<&str> {
    s.split_whitespace().collect()
}

#[tokio::test]
async fn khoa_serve_issues_tokens_for_what_the_cli_created_and_stops_on_sigterm() {
    // Arrange: a public client and a user, through the verbs.
    let dir = migrated().await;
    let password = "alice's serve password";
    ok(dir.path(), &ADD_WEB_CLIENT, None).await;
    ok(
        dir.path(),
        &["user", "add", "alice"],
        Some(&format!("{password}\n")),
    )
    .await;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = khoa_on(dir.path())
        .env("KHOA_LISTEN", &addr)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("khoa serve starts");
    // Collect the log, to explain a failure and to check what it never contains.
    let log = collect_stderr(&mut server);
    let base = format!("http://{addr}");
    let http = crate::helpers::http_builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    // Act 1: wait for liveness, bounded.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(res) = http.get(format!("{base}/healthz")).send().await
            && res.status() == StatusCode::OK
        {
            break;
        }
        if let Some(status) = server.try_wait().unwrap() {
            panic!(
                "khoa serve exited early ({status}):\n{}",
                log.await.unwrap()
            );
        }
        if Instant::now() > deadline {
            let _ = server.kill().await;
            panic!(
                "khoa serve was not live within 15 s:\n{}",
                log.await.unwrap()
            );
        }
        // Polling a separate process: there is no event to wait on but its socket.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Act 2: seed 004's shape of request, with the CLI's client and user.
    let res = http
        .post(format!("{base}/connect/token"))
        .header(reqwest::header::CONTENT_TYPE, FORM_CONTENT_TYPE)
        .body(form_body(&[
            ("grant_type", "password"),
            ("client_id", "web"),
            ("username", "alice"),
            ("password", password),
            ("scope", "read offline_access"),
        ]))
        .send()
        .await
        .expect("khoa serve answers");

    // Assert: a token the same server accepts.
    let body = token_ok(res).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(
        words(body["scope"].as_str().unwrap()),
        words("read offline_access")
    );
    let refresh = body["refresh_token"].as_str().expect("a refresh token");
    let access = access_token_of(&body);
    let protected = http
        .get(format!("{base}/api/protected-resource"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(protected.status(), StatusCode::OK);

    // Act 3: SIGTERM, by the child's own id.
    let pid = server.id().expect("a running child").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("khoa serve exits within 10 s of SIGTERM")
        .unwrap();

    // Assert: a graceful exit, and no credential in the log.
    let log = log.await.unwrap();
    assert!(status.success(), "exit {status} after SIGTERM:\n{log}");
    assert!(
        !log.contains(password) && !log.contains(refresh) && !log.contains(&access),
        "the log holds a credential"
    );
}

#[tokio::test]
async fn a_danger_clock_file_that_is_not_a_number_stops_start_up_naming_the_key() {
    let dir = migrated().await;
    let clock = dir.path().join("clock");
    std::fs::write(&clock, "tomorrow").unwrap();
    let mut cmd = khoa_on(dir.path());
    cmd.env("KHOA_DANGER_CLOCK_FILE", &clock)
        .env("KHOA_LISTEN", "127.0.0.1:0");

    let out = run(cmd, &["serve"], None).await;

    assert_eq!(out.status.code(), Some(1), "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("danger_clock_file") && out.stderr.contains("tomorrow"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_cli_verb_reads_the_danger_clock_file_when_it_starts() {
    let dir = migrated().await;
    let clock = dir.path().join("clock");
    std::fs::write(&clock, "86400").unwrap();
    let mut cmd = khoa_on(dir.path());
    cmd.env("KHOA_DANGER_CLOCK_FILE", &clock);

    let out = run(cmd, &["keys", "rotate", "--lead", "600"], None).await;

    assert!(out.status.success(), "{}", out.stderr);
    let activates_at: i64 = field(&out.stdout, "activates_at").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        activates_at >= now + 86_400 + 600 - 5,
        "a day ahead: {activates_at} vs {now}"
    );
}

#[tokio::test]
async fn an_invalid_listen_address_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = khoa_on(dir.path());
    cmd.env("KHOA_LISTEN", "not-an-address");

    let out = run(cmd, &["serve"], None).await;

    assert_eq!(out.status.code(), Some(1), "stderr: {}", out.stderr);
    assert!(
        out.stderr.to_ascii_lowercase().contains("listen"),
        "{}",
        out.stderr
    );
    assert!(
        !dir.path().join("khoa.db").exists(),
        "refused before the database"
    );
}

#[tokio::test]
async fn a_host_name_as_listen_address_is_refused_saying_what_an_address_looks_like() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = khoa_on(dir.path());
    serve.env("KHOA_LISTEN", "localhost:8080");

    let serve = run(serve, &["serve"], None).await;
    let demo = run(khoa(), &["demo", "--listen", "localhost:8080"], None).await;

    for out in [serve, demo] {
        assert_eq!(
            out.status.code().map(|c| c != 0),
            Some(true),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("`localhost:8080` is not an address"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("such as 127.0.0.1:8080"),
            "{}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn an_unsupported_database_url_in_the_config_file_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("khoa.toml");
    std::fs::write(&file, "database_url = \"mysql://x\"\n").unwrap();

    let out = run(khoa(), &["--config", file.to_str().unwrap(), "serve"], None).await;

    assert_eq!(out.status.code(), Some(1), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("database_url"), "{}", out.stderr);
}

/// A store failure keeps its cause to the operator's screen: the refusal names the database and
/// says what SQLite said, once (the cause is a `source()`, not text folded in at each layer).
#[tokio::test]
async fn a_database_file_that_is_not_sqlite_stops_start_up_with_the_drivers_cause_once() {
    let dir = migrated().await;
    let db = dir.path().join("khoa.db");
    for sidecar in ["khoa.db-wal", "khoa.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(sidecar));
    }
    std::fs::write(&db, vec![b'x'; 8192]).unwrap();

    let refused = fails(dir.path(), &["serve"], None).await;

    assert!(refused.contains(&db.display().to_string()), "{refused}");
    assert_eq!(
        refused.matches("file is not a database").count(),
        1,
        "{refused}"
    );
}

#[tokio::test]
async fn a_missing_config_file_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nonexistent.toml");

    let out = run(khoa(), &["--config", file.to_str().unwrap(), "serve"], None).await;

    assert_eq!(out.status.code(), Some(1), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("nonexistent.toml"), "{}", out.stderr);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
}

#[tokio::test]
async fn khoa_migrate_creates_a_fresh_database_in_an_existing_directory_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("var").join("khoa");

    // A directory that does not exist is a mistyped path, not a new database.
    let refused = fails(&data, &["migrate"], None).await;
    assert!(refused.contains("does not exist"), "{refused}");
    assert!(refused.contains(&data.display().to_string()), "{refused}");
    assert!(!data.exists(), "nothing was created");

    std::fs::create_dir_all(&data).unwrap();
    let first = ok(&data, &["migrate"], None).await;
    let second = ok(&data, &["migrate"], None).await;

    let db = data.join("khoa.db");
    assert_eq!(
        first.trim(),
        format!("created a new database at {}", db.display())
    );
    assert_eq!(second.trim(), "database is up to date");
    assert!(db.is_file() && data.join("master.key").is_file());
    // The schema is usable by the verbs.
    assert_eq!(ok(&data, &["client", "list"], None).await, "");
}

#[tokio::test]
async fn admin_verbs_refuse_a_database_that_does_not_exist_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();

    for verb in [
        &["client", "list"][..],
        &["user", "list"],
        &["keys", "list"],
        &["partner", "list"],
        &["audit", "list"],
    ] {
        let refused = fails(dir.path(), verb, None).await;
        assert!(refused.contains("does not exist"), "{verb:?}: {refused}");
        assert!(refused.contains("khoa migrate"), "{verb:?}: {refused}");
        assert!(!refused.contains("Stack backtrace"), "{refused}");
    }

    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "no khoa.db, no master.key: {left:?}");
}

#[tokio::test]
async fn admin_verbs_refuse_a_missing_master_key_instead_of_making_a_new_one() {
    let dir = migrated().await;
    std::fs::remove_file(dir.path().join("master.key")).unwrap();

    let refused = fails(dir.path(), &["client", "list"], None).await;

    assert!(refused.contains("master.key"), "{refused}");
    assert!(refused.contains("does not exist"), "{refused}");
    assert!(!dir.path().join("master.key").exists(), "no fresh key");
}

#[tokio::test]
async fn serve_refuses_a_database_whose_directory_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("typo");
    let mut cmd = khoa_on(&data);
    cmd.env("KHOA_LISTEN", format!("127.0.0.1:{}", free_port()));

    let out = run(cmd, &["serve"], None).await;

    assert_eq!(out.status.code(), Some(1), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("its directory"), "{}", out.stderr);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert!(!data.exists(), "no directory was created");
}

#[tokio::test]
async fn unknown_configuration_keys_stop_start_up_naming_the_key_and_the_nearest_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("khoa.toml");
    std::fs::write(&file, "lisen = \"127.0.0.1:18091\"\n").unwrap();

    let from_file = run(
        khoa_on(dir.path()),
        &["--config", file.to_str().unwrap(), "serve"],
        None,
    )
    .await;
    let mut cmd = khoa_on(dir.path());
    cmd.env("KHOA_DIALECTS__BANKHUB__ENABELD", "true");
    let from_env = run(cmd, &["serve"], None).await;

    assert_eq!(from_file.status.code(), Some(1), "{}", from_file.stderr);
    assert!(
        from_file.stderr.contains("khoa.toml"),
        "{}",
        from_file.stderr
    );
    assert!(from_file.stderr.contains("`lisen`"), "{}", from_file.stderr);
    assert!(
        from_file.stderr.contains("did you mean listen?"),
        "{}",
        from_file.stderr
    );
    assert_eq!(from_env.status.code(), Some(1), "{}", from_env.stderr);
    assert!(
        from_env.stderr.contains("KHOA_DIALECTS__BANKHUB__ENABELD")
            && from_env
                .stderr
                .contains("did you mean KHOA_DIALECTS__BANKHUB__ENABLED?"),
        "{}",
        from_env.stderr
    );
    assert!(
        !dir.path().join("khoa.db").exists(),
        "refused before the database"
    );
}

#[tokio::test]
async fn admin_verbs_speak_plainly_and_quietly() {
    let dir = migrated().await;
    let d = dir.path();

    // No INFO log lines on a verb unless asked.
    let added = run(khoa_on(d), &["client", "add", "svc"], None).await;
    assert!(added.status.success(), "{}", added.stderr);
    assert!(!added.stderr.contains("INFO"), "{}", added.stderr);
    let mut asked = khoa_on(d);
    asked.env("KHOA_LOG", "info");
    let listed = run(asked, &["client", "list"], None).await;
    assert!(
        listed.stderr.contains("INFO"),
        "KHOA_LOG asks: {}",
        listed.stderr
    );

    // The object named, no RFC code in front.
    let again = fails(d, &["client", "add", "svc"], None).await;
    assert!(again.contains("client svc already exists"), "{again}");
    let unknown = fails(d, &["client", "rotate-secret", "nosuch"], None).await;
    assert!(unknown.contains("no client nosuch"), "{unknown}");
    assert!(!unknown.contains("invalid_request"), "{unknown}");
    let partner = fails(d, &["partner", "add", "P9", "--client-id", "nosuch"], None).await;
    assert!(partner.contains("no client nosuch"), "{partner}");
    assert!(!partner.contains("invalid_request"), "{partner}");

    // NIST SP 800-63B: at least 8 characters.
    let short = fails(d, &["user", "add", "bob"], Some("7chars!\n")).await;
    assert!(short.contains("at least 8"), "{short}");
    ok(d, &["user", "add", "bob"], Some("eight ch\n")).await;
    let short = fails(d, &["user", "set-password", "bob"], Some("short\n")).await;
    assert!(short.contains("at least 8"), "{short}");
    let again = fails(d, &["user", "add", "bob"], Some("long enough\n")).await;
    assert!(again.contains("user bob already exists"), "{again}");
}

#[tokio::test]
async fn a_public_client_gets_grants_a_public_client_can_use() {
    let dir = migrated().await;
    let d = dir.path();

    ok(d, &["client", "add", "app", "--public"], None).await;
    ok(
        d,
        &[
            "client",
            "add",
            "spa",
            "--public",
            "--redirect-uri",
            "https://spa.example/cb",
        ],
        None,
    )
    .await;
    ok(d, &["client", "add", "svc"], None).await;
    let refused = fails(
        d,
        &[
            "client",
            "add",
            "bad",
            "--public",
            "--grant-types",
            "client_credentials",
        ],
        None,
    )
    .await;

    let grants = |id: &str| {
        let id = id.to_owned();
        async move { field(&ok(d, &["client", "show", &id], None).await, "grant_types") }
    };
    assert_eq!(grants("app").await, "password,refresh_token");
    assert_eq!(grants("spa").await, "authorization_code,refresh_token");
    assert_eq!(grants("svc").await, "client_credentials");
    assert!(
        refused.contains("public client cannot use the client_credentials"),
        "{refused}"
    );
}

#[tokio::test]
async fn partner_add_warns_when_the_partner_dialect_is_disabled() {
    let dir = migrated().await;
    let d = dir.path();
    ok(d, &["client", "add", "p1"], None).await;

    let off = run(
        khoa_on(d),
        &["partner", "add", "P1", "--client-id", "p1"],
        None,
    )
    .await;
    let mut enabled = khoa_on(d);
    enabled.env("KHOA_DIALECTS__PARTNER__ENABLED", "true");
    let on = run(
        enabled,
        &["partner", "add", "P2", "--client-id", "p1"],
        None,
    )
    .await;

    assert!(
        off.status.success() && on.status.success(),
        "{} {}",
        off.stderr,
        on.stderr
    );
    assert!(
        off.stderr
            .contains("warning: no served dialect opens envelopes"),
        "{}",
        off.stderr
    );
    assert!(!on.stderr.contains("warning"), "{}", on.stderr);
}

#[tokio::test]
async fn client_show_rotate_secret_and_remove_manage_a_confidential_client() {
    // Arrange: a confidential and a public client, then a server on their database.
    let dir = migrated().await;
    let added = ok(
        dir.path(),
        &[
            "client",
            "add",
            "svc",
            "--grant-types",
            "client_credentials",
            "--scopes",
            "a b",
            "--access-ttl",
            "600",
        ],
        None,
    )
    .await;
    let first_secret = field(&added, "client_secret");
    ok(
        dir.path(),
        &[
            "client",
            "add",
            "web",
            "--public",
            "--grant-types",
            "password",
        ],
        None,
    )
    .await;
    // Without the client cache, so that what the CLI changes is seen at once (with it, an old
    // secret keeps working for up to `client_cache_secs`: engine tests cover that).
    let app = spawn_app_in_with(dir, |c| c.client_cache_secs = 0).await;
    let path = app.dir.path().to_owned();
    token_ok(app.client_credentials("svc", &first_secret).await).await;

    // `client show`: the policy, never the secret nor its hash.
    let show = ok(&path, &["client", "show", "svc"], None).await;
    for (key, value) in [
        ("client_id", "svc"),
        ("name", "svc"),
        ("type", "confidential"),
        ("grant_types", "client_credentials"),
        ("allowed_scopes", "a b"),
        ("default_scopes", "a b"),
        ("token_format", "jwt"),
        ("access_ttl", "600"),
        ("disabled", "false"),
    ] {
        assert_eq!(field(&show, key), value, "{key} in:\n{show}");
    }
    let stored = app
        .engine
        .admin()
        .find_client("svc")
        .await
        .unwrap()
        .expect("svc exists")
        .secret_hash
        .expect("a confidential client has a hash");
    assert!(
        !show.contains(&stored),
        "client show prints the secret hash"
    );
    assert!(
        !show.contains(&first_secret),
        "client show prints the secret"
    );
    assert!(!show.to_ascii_lowercase().contains("secret"), "{show}");

    // `client rotate-secret`: a new secret, printed once, that works; the old one does not.
    let rotated = run(khoa_on(&path), &["client", "rotate-secret", "svc"], None).await;
    assert!(rotated.status.success(), "{}", rotated.stderr);
    assert!(rotated.stderr.contains("shown once"), "{}", rotated.stderr);
    let second_secret = field(&rotated.stdout, "client_secret");
    assert!(second_secret.len() >= 32, "a generated secret is long");
    assert!(
        second_secret != first_secret,
        "the rotation must yield a new secret"
    );
    token_ok(app.client_credentials("svc", &second_secret).await).await;
    oauth_error(
        app.client_credentials("svc", &first_secret).await,
        401,
        "invalid_client",
    )
    .await;

    // From stdin: acknowledged, never echoed; too short a secret is refused and changes nothing.
    let chosen = "an operator-chosen secret of 40 chars...";
    let replaced = ok(
        &path,
        &["client", "rotate-secret", "svc", "--secret-stdin"],
        Some(&format!("{chosen}\n")),
    )
    .await;
    assert_eq!(replaced.trim(), "secret of svc replaced");
    token_ok(app.client_credentials("svc", chosen).await).await;
    let short = fails(
        &path,
        &["client", "rotate-secret", "svc", "--secret-stdin"],
        Some("too-short\n"),
    )
    .await;
    assert!(short.contains("at least 32"), "{short}");
    token_ok(app.client_credentials("svc", chosen).await).await;

    // A public client has no secret to rotate; an unknown client none either.
    let public = fails(&path, &["client", "rotate-secret", "web"], None).await;
    assert!(public.contains("public client has no secret"), "{public}");
    let unknown = fails(&path, &["client", "rotate-secret", "nobody"], None).await;
    assert!(unknown.contains("no client nobody"), "{unknown}");

    // `client remove`: gone for `show`, for a second `remove` and for the server.
    let removed = ok(&path, &["client", "remove", "svc"], None).await;
    assert_eq!(removed.trim(), "removed client svc");
    let gone = fails(&path, &["client", "show", "svc"], None).await;
    assert!(gone.contains("no client svc"), "{gone}");
    fails(&path, &["client", "remove", "svc"], None).await;
    oauth_error(
        app.client_credentials("svc", chosen).await,
        401,
        "invalid_client",
    )
    .await;
    let listed = ok(&path, &["client", "list"], None).await;
    assert!(!listed.lines().any(|l| l.starts_with("svc\t")), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("web\t")), "{listed}");
}

#[tokio::test]
async fn client_add_with_secret_stdin_takes_a_long_secret_and_refuses_a_short_one() {
    let dir = migrated().await;
    let add = |id: &'static str| {
        [
            "client",
            "add",
            id,
            "--secret-stdin",
            "--grant-types",
            "client_credentials",
        ]
    };

    let short = fails(
        dir.path(),
        &add("short"),
        Some("31 characters, one too few.....\n"),
    )
    .await;
    let chosen = "exactly thirty-two characters!!!";
    let added = ok(dir.path(), &add("chosen"), Some(&format!("{chosen}\n"))).await;

    assert!(short.contains("at least 32"), "{short}");
    assert_eq!(added.trim(), "client_id: chosen", "only the id, no secret");
    let missing = fails(dir.path(), &["client", "show", "short"], None).await;
    assert!(missing.contains("no client short"), "{missing}");
    let app = spawn_app_in(dir).await;
    token_ok(app.client_credentials("chosen", chosen).await).await;
}

#[tokio::test]
async fn user_verbs_change_what_the_password_grant_accepts() {
    // Arrange
    let dir = migrated().await;
    ok(dir.path(), &ADD_WEB_CLIENT, None).await;
    let (old, new) = ("alice's first password", "alice's second password");
    let created = ok(
        dir.path(),
        &["user", "add", "alice"],
        Some(&format!("{old}\n")),
    )
    .await;
    assert!(created.starts_with("created user alice (usr_"), "{created}");
    assert!(!created.contains(old));
    let app = spawn_app_in(dir).await;
    let path = app.dir.path().to_owned();
    let grant = |password: &'static str| app.password_grant("web", "alice", password, None);
    token_ok(grant(old).await).await;

    // `user set-password`: the new password works, the old one no longer does.
    let changed = ok(
        &path,
        &["user", "set-password", "alice"],
        Some(&format!("{new}\n")),
    )
    .await;
    assert_eq!(changed.trim(), "password of alice changed");
    token_ok(grant(new).await).await;
    oauth_error(grant(old).await, 400, "invalid_grant").await;

    // `user disable`, then `--enable`.
    let disabled = ok(&path, &["user", "disable", "alice"], None).await;
    assert_eq!(disabled.trim(), "alice disabled");
    let listed = ok(&path, &["user", "list"], None).await;
    let alice: Vec<&str> = listed
        .lines()
        .find(|l| l.starts_with("alice\t"))
        .expect("alice is listed")
        .split('\t')
        .collect();
    assert_eq!(alice[2], "disabled", "{listed}");
    oauth_error(grant(new).await, 400, "invalid_grant").await;
    let enabled = ok(&path, &["user", "disable", "alice", "--enable"], None).await;
    assert_eq!(enabled.trim(), "alice enabled");
    token_ok(grant(new).await).await;

    // `user remove`: gone from the list and from the grant.
    let removed = ok(&path, &["user", "remove", "alice"], None).await;
    assert_eq!(removed.trim(), "removed user alice");
    let listed = ok(&path, &["user", "list"], None).await;
    assert!(
        !listed.lines().any(|l| l.starts_with("alice\t")),
        "{listed}"
    );
    oauth_error(grant(new).await, 400, "invalid_grant").await;

    // Refusals: no password on stdin, an unknown user.
    for empty in ["", "\n"] {
        let refused = fails(&path, &["user", "add", "bob"], Some(empty)).await;
        assert!(
            refused.contains("no password on standard input"),
            "{refused}"
        );
    }
    let listed = ok(&path, &["user", "list"], None).await;
    assert!(!listed.lines().any(|l| l.starts_with("bob\t")), "{listed}");
    let unknown = fails(
        &path,
        &["user", "set-password", "nobody"],
        Some("a password\n"),
    )
    .await;
    assert!(unknown.contains("no user nobody"), "{unknown}");
}

#[tokio::test]
async fn keys_list_shows_exactly_one_current_key_after_first_use() {
    // Arrange: the first use of a fresh database creates the first signing key.
    let dir = migrated().await;
    let added = ok(
        dir.path(),
        &[
            "client",
            "add",
            "svc",
            "--grant-types",
            "client_credentials",
        ],
        None,
    )
    .await;
    let secret = field(&added, "client_secret");

    // Act: listing twice creates nothing.
    let first = ok(dir.path(), &["keys", "list"], None).await;
    let second = ok(dir.path(), &["keys", "list"], None).await;

    // Assert
    let mut lines = first.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["KID", "STATE", "ACTIVATES_AT", "RETIRES_AT"],
        "{first}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 1, "one key:\n{first}");
    assert_eq!(rows[0].len(), 4, "{first}");
    assert_eq!(rows[0][1], "current", "{first}");
    // An ISO 8601 UTC time, as `audit list` prints them.
    let activates = rows[0][2];
    assert!(
        activates.len() == 20 && activates.ends_with('Z') && activates.as_bytes()[10] == b'T',
        "{first}"
    );
    assert_eq!(rows[0][3], "-", "open-ended: {first}");
    assert_eq!(second, first);
    // That key is the one a server on this database signs with and publishes.
    let kid = rows[0][0].to_owned();
    let app = spawn_app_in(dir).await;
    let body = token_ok(app.client_credentials("svc", &secret).await).await;
    assert_eq!(jwt_header(&access_token_of(&body))["kid"], kid.as_str());
    assert_eq!(app.jwks_kids().await, [kid]);
}

#[tokio::test]
async fn client_add_registers_redirect_uris_for_the_code_grant_and_requires_one() {
    let dir = migrated().await;
    let add = ["client", "add", "spa", "--public", "--grant-types"];
    let code_grant = "authorization_code,refresh_token";

    let without = fails(dir.path(), &[&add[..], &[code_grant]].concat(), None).await;
    let with_fragment = fails(
        dir.path(),
        &[
            &add[..],
            &[code_grant, "--redirect-uri", "https://a.example/cb#x"],
        ]
        .concat(),
        None,
    )
    .await;
    let uris = [
        "--redirect-uri",
        "https://a.example/cb",
        "--redirect-uri",
        "http://127.0.0.1:8000/cb",
    ];
    ok(
        dir.path(),
        &[&add[..], &[code_grant], &uris[..]].concat(),
        None,
    )
    .await;
    let shown = ok(dir.path(), &["client", "show", "spa"], None).await;

    assert!(without.contains("--redirect-uri"), "{without}");
    assert!(with_fragment.contains("fragment"), "{with_fragment}");
    assert_eq!(
        words(&field(&shown, "redirect_uris")),
        words("https://a.example/cb http://127.0.0.1:8000/cb")
    );
    assert_eq!(
        words(&field(&shown, "grant_types").replace(',', " ")),
        words("authorization_code refresh_token")
    );
}
