//! The `khoa` binary itself: `khoa demo` serving seed 004's sample, and the admin verbs.

use serde_json::Value;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{Announced, TIMEOUT, announced, collect_stderr, field, khoa, ok, run};
use crate::helpers::{FORM_CONTENT_TYPE, jwt_header, oauth_error, spawn_app_in, token_ok};
use crate::seed004::SEED_004_BODY;

#[tokio::test]
async fn khoa_demo_serves_seed_004_and_writes_demo_json() {
    // Arrange: the real binary, no config file, on a free port.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    let mut child = khoa()
        .args(["demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("khoa demo starts");
    // Its log is collected to explain a failure rather than echo it, and its stdout drained
    // so that it never blocks on a full pipe.
    let Announced { base, .. } = announced(&mut child, "khoa demo listening on ").await;
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    // Act: seed 004's request, as its cURL line sends it.
    let http = crate::helpers::http_client();
    let res = http
        .post(format!("{base}/connect/token"))
        .header(reqwest::header::CONTENT_TYPE, FORM_CONTENT_TYPE)
        .body(SEED_004_BODY)
        .send()
        .await
        .expect("the demo answers");

    // Assert
    let body = token_ok(res).await;
    assert!(body["access_token"].is_string());
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["refresh_token"].is_string());
    assert_eq!(
        body["scope"],
        "client-data config-data hub-data offline_access user-data"
    );
    let demo: Value =
        serde_json::from_slice(&std::fs::read(data.join("demo.json")).expect("demo.json"))
            .expect("demo.json is JSON");
    let oauth2 = &demo["oauth2"];
    assert_eq!(oauth2["path"], "/connect/token");
    assert_eq!(oauth2["client_id"], "YOUR_CLIENT_ID");
    assert_eq!(oauth2["username"], "account@tripdata.vn");
    assert_eq!(oauth2["password"], "@Password123");
    assert_eq!(demo["base_url"], base.as_str());
    let confidential = &oauth2["confidential"];
    let (id, secret) = (
        confidential["client_id"].as_str().expect("a client_id"),
        confidential["client_secret"]
            .as_str()
            .expect("a client_secret"),
    );
    // The published confidential credentials work too.
    let cc = http
        .post(format!("{base}/connect/token"))
        .basic_auth(id, Some(secret))
        .header(reqwest::header::CONTENT_TYPE, FORM_CONTENT_TYPE)
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    token_ok(cc).await;

    // Every dialect is served at its documented path with the credentials demo.json names.
    let s = |v: &Value| v.as_str().expect("a string field").to_owned();
    let d = &demo["derivative"];
    assert_eq!(d["path"], "/oapi/auth/gen-secret-key/derivative");
    let res = http
        .post(format!("{base}{}", s(&d["path"])))
        .json(&serde_json::json!({ "username": s(&d["username"]), "password": s(&d["password"]) }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let b = &demo["bankhub"];
    assert_eq!(b["path"], "/v1/token");
    let res = http
        .post(format!("{base}{}", s(&b["path"])))
        .basic_auth(s(&b["client_id"]), Some(s(&b["client_secret"])))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v = &demo["vietqr"];
    assert_eq!(v["path"], "/vqr/api/token_generate");
    let res = http
        .post(format!("{base}{}", s(&v["path"])))
        .basic_auth(s(&v["username"]), Some(s(&v["password"])))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let p = &demo["partner"];
    assert_eq!(p["login_path"], "/openapi/v1/auth/login");
    assert_eq!(p["refresh_path"], "/openapi/v1/auth/refresh");
    let mut key = [0u8; 32];
    hex::decode_to_slice(s(&p["key_hex"]), &mut key).expect("key_hex is 32 bytes of hex");
    let payload = serde_json::json!({
        "username": s(&p["username"]),
        "password": s(&p["password"]),
        "client_id": s(&p["client_id"]),
        "client_secret": s(&p["client_secret"]),
    });
    let data = khoa_core::envelope::seal_hex(&key, &[7u8; 16], payload.to_string().as_bytes());
    let res = http
        .post(format!("{base}{}", s(&p["login_path"])))
        .header("Partner-Code", s(&p["partner_code"]))
        .json(&serde_json::json!({ "data": data }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    child.kill().await.expect("the demo can be stopped");
}

#[tokio::test]
async fn khoa_demo_refuses_a_non_loopback_address_without_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never-created");

    let mut cmd = khoa();
    cmd.args(["demo", "--listen", "0.0.0.0:0", "--data"])
        .arg(&data);
    let out = run(cmd, &[], None).await;

    assert!(!out.status.success(), "it must exit non-zero");
    assert!(out.stderr.contains("--allow-remote"), "{}", out.stderr);
    assert!(!data.exists(), "refused before touching the data directory");
}

#[tokio::test]
async fn cli_admin_verbs_manage_clients_users_and_keys_of_the_served_database() {
    let dir = crate::cli::migrated().await;

    // A confidential client: its generated secret is printed exactly once.
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
        ],
        None,
    )
    .await;
    let secret = field(&added, "client_secret");
    assert!(secret.len() >= 32, "{secret}");

    let listed = ok(dir.path(), &["client", "list"], None).await;
    assert!(listed.lines().any(|l| l.starts_with("svc\t")), "{listed}");
    assert!(!listed.contains(&secret), "the secret is never listed");

    // A public client and a user whose password comes from stdin.
    ok(
        dir.path(),
        &[
            "client",
            "add",
            "app",
            "--public",
            "--grant-types",
            "password",
            "--scopes",
            "a",
        ],
        None,
    )
    .await;
    ok(
        dir.path(),
        &["user", "add", "alice"],
        Some("alice's stdin password\n"),
    )
    .await;
    let users = ok(dir.path(), &["user", "list"], None).await;
    assert!(users.lines().any(|l| l.starts_with("alice\t")), "{users}");
    assert!(!users.contains("alice's stdin password"));

    // A key rotation with the default lead: the current key signs on, the next one waits.
    ok(dir.path(), &["keys", "rotate"], None).await;
    let keys = ok(dir.path(), &["keys", "list"], None).await;
    let status_of = |status: &str| -> Vec<String> {
        keys.lines()
            .skip(1)
            .filter(|l| l.split_whitespace().nth(1) == Some(status))
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    let (current, next) = (status_of("current"), status_of("next"));
    assert_eq!(current.len(), 1, "{keys}");
    assert_eq!(next.len(), 1, "{keys}");

    // Serve that database in-process: what the CLI wrote is what the server uses.
    let app = spawn_app_in(dir).await;
    let cc = token_ok(app.client_credentials("svc", &secret).await).await;
    assert_eq!(cc["scope"], "a b");
    assert_eq!(
        jwt_header(cc["access_token"].as_str().unwrap())["kid"],
        current[0].as_str(),
        "the current key signs until the next one activates"
    );
    assert_eq!(
        app.jwks_kids().await,
        [current[0].clone(), next[0].clone()],
        "both keys are published"
    );
    token_ok(
        app.password_grant("app", "alice", "alice's stdin password", None)
            .await,
    )
    .await;
    oauth_error(
        app.client_credentials("svc", "not-the-secret").await,
        401,
        "invalid_client",
    )
    .await;
}

#[tokio::test]
async fn khoa_demo_serves_a_dialects_dir_and_prints_its_curl_lines() {
    let dir = tempfile::tempdir().unwrap();
    let defs = dir.path().join("dialects");
    std::fs::create_dir(&defs).unwrap();
    // Casso's own path is the bank hub's, which the demo serves: moved for the demo.
    let casso = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dialects/casso.toml"),
    )
    .unwrap()
    .replace("path = \"/v1/token\"", "path = \"/casso/v1/token\"");
    std::fs::write(defs.join("casso.toml"), casso).unwrap();
    let mut child = khoa()
        .args(["demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--dialects")
        .arg(&defs)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("khoa demo starts");
    let log = collect_stderr(&mut child);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let found = tokio::time::timeout(TIMEOUT, async {
        let mut base = None;
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.strip_prefix("khoa demo listening on ") {
                base = Some(url.to_owned());
            }
            if line.contains("/casso/v1/token") {
                return base.map(|b| (b, line));
            }
        }
        None
    })
    .await;
    let Ok(Some((base, curl))) = found else {
        let _ = child.kill().await;
        panic!(
            "no casso curl line; stderr:\n{}",
            log.await.unwrap_or_default()
        );
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    assert_eq!(
        curl,
        format!(
            "curl -X POST '{base}/casso/v1/token' -H 'Content-Type: application/json' \
             -d '{{\"code\":\"CLIENT_SECRET\"}}'"
        )
    );
    // The endpoint is served, in its definition's shape (its client is not registered yet).
    let res = crate::helpers::http_client()
        .post(format!("{base}/casso/v1/token"))
        .json(&serde_json::json!({"code": "CLIENT_SECRET"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["message"], "Unauthorized Access");
    let _ = child.kill().await;
}
