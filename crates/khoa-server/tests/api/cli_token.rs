//! `khoa token get` against the real server: the endpoint's answer printed (refresh token
//! redacted), `--header` for curl, secrets from a file, standard input or the environment only.

use khoa_server::demo::{
    BANKHUB_CLIENT, BANKHUB_SECRET, OAUTH2_PASSWORD, OAUTH2_PUBLIC_CLIENT, OAUTH2_SCOPES,
    OAUTH2_USERNAME,
};
use reqwest::StatusCode;
use serde_json::Value;

use crate::cli::{khoa, run};
use crate::helpers::{TestApp, spawn_demo_app};

async fn accepted(app: &TestApp, authorization: &str) -> bool {
    app.protected_with(Some(authorization)).await.status() == StatusCode::OK
}

#[tokio::test]
async fn a_bankhub_token_is_printed_as_the_endpoint_answers_it() {
    let app = spawn_demo_app().await;
    let mut cmd = khoa();
    // The caller's side reads no khoa configuration: a server's file that is not there is
    // no concern of it.
    cmd.env("BANKHUB_SECRET", BANKHUB_SECRET)
        .env("KHOA_CONFIG", "/nonexistent/khoa.toml");
    let url = app.url("/v1/token");
    let out = run(
        cmd,
        &[
            "token",
            "get",
            "--dialect",
            "bankhub",
            "--token-url",
            &url,
            "--client-id",
            BANKHUB_CLIENT,
            "--client-secret-env",
            "BANKHUB_SECRET",
        ],
        None,
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    let answer: Value = serde_json::from_str(&out.stdout).expect("the answer, as JSON");
    assert_eq!(answer["code"], 201, "{answer}");
    let token = answer["access_token"].as_str().unwrap();
    assert!(accepted(&app, &format!("Bearer {token}")).await);
    assert!(!out.stderr.contains(BANKHUB_SECRET));
}

/// `khoa token get` for seed 004's public client and user, the password from `password_file`.
fn tripdata_user<'a>(url: &'a str, password_file: &'a str) -> Vec<&'a str> {
    vec![
        "token",
        "get",
        "--token-url",
        url,
        "--client-id",
        OAUTH2_PUBLIC_CLIENT,
        "--username",
        OAUTH2_USERNAME,
        "--password-file",
        password_file,
        "--scope",
        OAUTH2_SCOPES,
    ]
}

#[tokio::test]
async fn with_header_it_prints_the_authorization_line_and_reads_the_secret_from_stdin() {
    let app = spawn_demo_app().await;
    let url = app.url("/connect/token");
    let out = run(
        khoa(),
        &[tripdata_user(&url, "-"), vec!["--header"]].concat(),
        Some(&format!("{OAUTH2_PASSWORD}\n")),
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    let line = out.stdout.trim_end();
    let value = line.strip_prefix("Authorization: ").expect(line);
    assert!(value.starts_with("Bearer "), "{line}");
    assert!(accepted(&app, value).await);
}

#[tokio::test]
async fn a_refresh_token_in_the_answer_is_never_printed() {
    let app = spawn_demo_app().await;
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, format!("{OAUTH2_PASSWORD}\n")).unwrap();
    let url = app.url("/connect/token");
    let out = run(
        khoa(),
        &tripdata_user(&url, password.to_str().unwrap()),
        None,
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    let answer: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["refresh_token"], "[redacted]", "{answer}");
    assert!(
        answer["access_token"]
            .as_str()
            .is_some_and(|t| t.len() > 20)
    );
}

#[tokio::test]
async fn mistakes_are_refused_naming_what_is_wrong_and_never_echoing_a_secret() {
    let app = spawn_demo_app().await;
    let url = app.url("/v1/token");
    let get = |extra: &[&str]| {
        let mut args = vec!["token", "get", "--token-url", url.as_str()];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let cases: [(Vec<String>, Option<&str>, &str); 4] = [
        (get(&["--dialect", "nonesuch"]), None, "--dialect nonesuch"),
        (
            get(&["--client-secret-file", "-", "--password-file", "-"]),
            Some("x\ny\n"),
            "only one secret",
        ),
        (
            get(&[
                "--dialect",
                "bankhub",
                "--client-id",
                BANKHUB_CLIENT,
                "--client-secret-file",
                "-",
            ]),
            Some("not-the-bankhub-secret\n"),
            "HTTP 401",
        ),
        (
            get(&["--dialect", "bankhub", "--client-id", BANKHUB_CLIENT]),
            None,
            "client_secret",
        ),
    ];
    for (args, stdin, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(khoa(), &args, stdin).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            !out.stderr.contains("not-the-bankhub-secret"),
            "{}",
            out.stderr
        );
    }
}

/// Two shells on one host calling `khoa token get --store DIR --refresh` at once: twenty
/// processes, one rotation chain, no refresh token ever redeemed twice (the file lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_store_rotate_one_chain_and_never_redeem_twice() {
    use khoa_standin::{CLIENT_ID, CLIENT_SECRET, ManualClock, PASSWORD, StandIn, USERNAME};
    let clock = ManualClock::new(1_800_000_000_000);
    let standin = StandIn::start(clock.as_now()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tokens");
    let secret = dir.path().join("secret");
    let password = dir.path().join("password");
    std::fs::write(&secret, CLIENT_SECRET).unwrap();
    std::fs::write(&password, PASSWORD).unwrap();
    let url = standin.url("/token");
    let args = [
        "token",
        "get",
        "--token-url",
        &url,
        "--client-id",
        CLIENT_ID,
        "--client-secret-file",
        secret.to_str().unwrap(),
        "--username",
        USERNAME,
        "--password-file",
        password.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--refresh",
    ]
    .map(str::to_owned);
    let shell = |args: [String; 15]| {
        tokio::spawn(async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut tokens = Vec::new();
            for _ in 0..10 {
                let out = run(khoa(), &args, None).await;
                assert!(out.status.success(), "{}", out.stderr);
                let answer: Value = serde_json::from_str(&out.stdout).unwrap();
                tokens.push(answer["access_token"].as_str().unwrap().to_owned());
            }
            tokens
        })
    };
    let (a, b) = (shell(args.clone()), shell(args));
    let mut all = a.await.unwrap();
    all.extend(b.await.unwrap());

    let counts = standin.counts();
    assert_eq!(counts.refresh_reused, 0, "{counts:?}");
    assert_eq!((counts.logins, counts.refreshes), (1, 19), "{counts:?}");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 20, "every process printed a token of its own");
}
