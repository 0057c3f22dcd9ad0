//! Secrets never reach the logs: the real `khoa demo` at its most verbose (`KHOA_LOG=trace`,
//! JSON lines), driven through every flow of every dialect, and the admin CLI creating a
//! client and a user with their secrets on standard input. Then no password, client secret,
//! token, OTP, authorization code, PKCE verifier, partner key or master key may appear in what
//! they printed, in the clear or in the encodings a header or a form would give it.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::Stdio;

use crate::cli::{Announced, announced, khoa, khoa_on, run};
use crate::helpers::{FORM_CONTENT_TYPE, form_body, form_encode};

/// Everything a log line must never contain, with the forms it may travel in.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: &str, secret: &str) {
        assert!(secret.len() >= 8, "{what} is too short to search for");
        let forms = [
            secret.to_owned(),
            form_encode(secret),
            STANDARD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
        ];
        for form in forms {
            self.0.push((what.to_owned(), form));
        }
    }

    /// A client's id and secret, also as the `Authorization: Basic` value carries them.
    fn add_basic(&mut self, what: &str, id: &str, secret: &str) {
        self.add(what, secret);
        let basic = STANDARD.encode(format!("{id}:{secret}"));
        self.0.push((format!("{what} (Basic)"), basic));
    }

    fn add_field(&mut self, what: &str, body: &Value, field: &str) {
        let value = body[field]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no {field} in {body}"));
        self.add(&format!("{what} {field}"), value);
    }

    /// What `output` leaks, if anything.
    fn found(&self, output: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, form)| output.contains(form.as_str()))
            .map(|(what, _)| what.as_str())
    }

    #[track_caller]
    fn assert_absent(&self, output: &str, source: &str) {
        if let Some(what) = self.found(output) {
            panic!("{source} contains the {what}");
        }
    }
}

/// The demo, started at trace level with JSON logs; its base URL and its collected stderr.
struct Demo {
    base: String,
    child: tokio::process::Child,
    log: tokio::task::JoinHandle<String>,
    stdout: tokio::task::JoinHandle<String>,
}

async fn start_demo(data: &std::path::Path) -> Demo {
    let mut child = khoa()
        .args(["demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("KHOA_LOG", "trace")
        .env("KHOA_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("khoa demo starts");
    let Announced { base, log, stdout } = announced(&mut child, "khoa demo listening on ").await;
    Demo {
        base,
        child,
        log,
        stdout,
    }
}

async fn json_of(res: reqwest::Response, status: u16, what: &str) -> Value {
    let got = res.status().as_u16();
    let body = res.text().await.unwrap();
    assert_eq!(got, status, "{what}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: not JSON: {body}"))
}

fn s(v: &Value) -> String {
    v.as_str().expect("a string field").to_owned()
}

#[tokio::test]
async fn no_secret_reaches_the_logs_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let mut demo = start_demo(&data).await;
    let base = demo.base.clone();
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(data.join("demo.json")).unwrap()).expect("demo.json");
    let http = crate::helpers::http_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |path: &str| format!("{base}{path}");
    let mut secrets = Secrets::default();
    // Only what the demo prints on purpose (its ready-to-paste credentials) may be on its
    // stdout; nothing it issues may.
    let mut issued = Secrets::default();

    // ---- OAuth 2.0: password, refresh, client credentials, introspection, revocation ----
    let o = &cfg["oauth2"];
    let (user, password, public) = (s(&o["username"]), s(&o["password"]), s(&o["client_id"]));
    secrets.add("oauth2 password", &password);
    let (svc, svc_secret) = (
        s(&o["confidential"]["client_id"]),
        s(&o["confidential"]["client_secret"]),
    );
    secrets.add_basic("oauth2 client secret", &svc, &svc_secret);
    let token = |form: Vec<(&str, String)>| {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http.post(url("/connect/token"))
            .header(CONTENT_TYPE, FORM_CONTENT_TYPE)
            .body(form_body(&pairs))
    };
    let login = json_of(
        token(vec![
            ("grant_type", "password".into()),
            ("client_id", public.clone()),
            ("username", user.clone()),
            ("password", password.clone()),
            ("scope", s(&o["scope"])),
        ])
        .send()
        .await
        .unwrap(),
        200,
        "oauth2 login",
    )
    .await;
    for f in ["access_token", "refresh_token"] {
        issued.add_field("oauth2 login", &login, f);
    }
    let refreshed = json_of(
        token(vec![
            ("grant_type", "refresh_token".into()),
            ("client_id", public.clone()),
            ("refresh_token", s(&login["refresh_token"])),
        ])
        .send()
        .await
        .unwrap(),
        200,
        "oauth2 refresh",
    )
    .await;
    for f in ["access_token", "refresh_token"] {
        issued.add_field("oauth2 refresh", &refreshed, f);
    }
    let wrong = "definitely-not-the-password";
    secrets.add("wrong password", wrong);
    let refused = token(vec![
        ("grant_type", "password".into()),
        ("client_id", public.clone()),
        ("username", user.clone()),
        ("password", wrong.into()),
    ])
    .send()
    .await
    .unwrap();
    assert_eq!(refused.status(), 400);
    let cc = json_of(
        token(vec![("grant_type", "client_credentials".into())])
            .basic_auth(&svc, Some(&svc_secret))
            .send()
            .await
            .unwrap(),
        200,
        "client credentials",
    )
    .await;
    issued.add_field("client credentials", &cc, "access_token");
    let access = s(&refreshed["access_token"]);
    let protected = http
        .get(url("/api/protected-resource"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(protected.status(), 200);
    for (path, t) in [
        ("/connect/introspect", access.clone()),
        ("/connect/introspect", s(&refreshed["refresh_token"])),
        ("/connect/revocation", s(&refreshed["refresh_token"])),
        ("/connect/revocation", s(&cc["access_token"])),
    ] {
        let res = http
            .post(url(path))
            .basic_auth(&svc, Some(&svc_secret))
            .header(CONTENT_TYPE, FORM_CONTENT_TYPE)
            .body(form_body(&[("token", &t)]))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }

    // ---- the authorization code flow with PKCE, through the login form ----
    let a = &o["authorization_code"];
    let verifier = s(&a["code_verifier"]);
    secrets.add("PKCE verifier", &verifier);
    let query = form_body(&[
        ("response_type", "code"),
        ("client_id", &s(&a["client_id"])),
        ("redirect_uri", &s(&a["redirect_uri"])),
        ("scope", &s(&a["scope"])),
        ("state", "log-secrets-state"),
        ("code_challenge", &s(&a["code_challenge"])),
        ("code_challenge_method", "S256"),
    ]);
    let page = http
        .get(format!("{}?{query}", url(&s(&a["authorize_path"]))))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let cookie = page.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    let mut form: Vec<(String, String)> = html
        .split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.strip_prefix("name=\"")?.split('"').next()?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            Some((
                name.to_owned(),
                value.replace("&amp;", "&").replace("&quot;", "\""),
            ))
        })
        .collect();
    form.push(("username".into(), user.clone()));
    form.push(("password".into(), password.clone()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let back = http
        .post(url(&s(&a["authorize_path"])))
        .header(CONTENT_TYPE, FORM_CONTENT_TYPE)
        .header(COOKIE, &cookie)
        .body(form_body(&pairs))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 303, "{}", back.text().await.unwrap());
    let location = back.headers()[LOCATION].to_str().unwrap().to_owned();
    let params: HashMap<String, String> = location
        .split_once('?')
        .unwrap()
        .1
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .unwrap();
            (k.to_owned(), v.into_owned())
        })
        .collect();
    let code = params["code"].clone();
    issued.add("authorization code", &code);
    let exchanged = json_of(
        token(vec![
            ("grant_type", "authorization_code".into()),
            ("client_id", s(&a["client_id"])),
            ("code", code),
            ("redirect_uri", s(&a["redirect_uri"])),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap(),
        200,
        "code exchange",
    )
    .await;
    for f in ["access_token", "refresh_token", "id_token"] {
        issued.add_field("code exchange", &exchanged, f);
    }

    // ---- derivative: login with an OTP, the OTP at the resource, refresh ----
    let d = &cfg["derivative"];
    secrets.add("derivative password", &s(&d["password"]));
    let dlogin = json_of(
        http.post(url(&s(&d["path"])))
            .json(&json!({ "username": s(&d["username"]), "password": s(&d["password"]) }))
            .send()
            .await
            .unwrap(),
        200,
        "derivative login",
    )
    .await;
    for f in ["access_token", "refresh_token", "otp_token"] {
        issued.add_field("derivative login", &dlogin, f);
    }
    for otp in [s(&dlogin["otp_token"]), "0123456789abcdef-wrong-otp".into()] {
        http.post(url("/api/protected-resource"))
            .bearer_auth(s(&dlogin["access_token"]))
            .header("x-otp-token", otp)
            .send()
            .await
            .unwrap();
    }
    let drefresh = json_of(
        token(vec![
            ("grant_type", "refresh_token".into()),
            ("client_id", "oapi-derivative".into()),
            ("refresh_token", s(&dlogin["refresh_token"])),
        ])
        .send()
        .await
        .unwrap(),
        200,
        "derivative refresh",
    )
    .await;
    for f in ["access_token", "refresh_token", "otp_token"] {
        issued.add_field("derivative refresh", &drefresh, f);
    }

    // ---- bankhub and VietQR: Basic credentials ----
    let b = &cfg["bankhub"];
    secrets.add_basic(
        "bankhub secret",
        &s(&b["client_id"]),
        &s(&b["client_secret"]),
    );
    let bank = json_of(
        http.post(url(&s(&b["path"])))
            .basic_auth(s(&b["client_id"]), Some(s(&b["client_secret"])))
            .send()
            .await
            .unwrap(),
        201,
        "bankhub",
    )
    .await;
    issued.add_field("bankhub", &bank, "access_token");
    let v = &cfg["vietqr"];
    secrets.add_basic("vietqr password", &s(&v["username"]), &s(&v["password"]));
    let vqr = json_of(
        http.post(url(&s(&v["path"])))
            .basic_auth(s(&v["username"]), Some(s(&v["password"])))
            .send()
            .await
            .unwrap(),
        200,
        "vietqr",
    )
    .await;
    issued.add_field("vietqr", &vqr, "access_token");

    // ---- partner: the encrypted login and refresh ----
    let p = &cfg["partner"];
    let key_hex = s(&p["key_hex"]);
    secrets.add("partner key", &key_hex);
    secrets.add("partner password", &s(&p["password"]));
    secrets.add("partner client secret", &s(&p["client_secret"]));
    let mut key = [0u8; 32];
    hex::decode_to_slice(&key_hex, &mut key).unwrap();
    let sealed = |payload: Value| json!({ "data": khoa_core::envelope::seal_hex(&key, &[9u8; 16], payload.to_string().as_bytes()) });
    let plogin = json_of(
        http.post(url(&s(&p["login_path"])))
            .header("Partner-Code", s(&p["partner_code"]))
            .json(&sealed(json!({
                "username": s(&p["username"]),
                "password": s(&p["password"]),
                "client_id": s(&p["client_id"]),
                "client_secret": s(&p["client_secret"]),
            })))
            .send()
            .await
            .unwrap(),
        200,
        "partner login",
    )
    .await;
    for f in ["access_token", "refresh_token"] {
        issued.add_field("partner login", &plogin, f);
    }
    let prefresh = json_of(
        http.post(url(&s(&p["refresh_path"])))
            .header("Partner-Code", s(&p["partner_code"]))
            .json(&sealed(
                json!({ "refresh_token": s(&plogin["refresh_token"]) }),
            ))
            .send()
            .await
            .unwrap(),
        200,
        "partner refresh",
    )
    .await;
    for f in ["access_token", "refresh_token"] {
        issued.add_field("partner refresh", &prefresh, f);
    }

    // ---- what the metrics saw: every dialect issued, under its own label ----
    let metrics = http
        .get(url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (dialect, grant) in [
        ("oauth2", "password"),
        ("oauth2", "refresh_token"),
        ("oauth2", "client_credentials"),
        ("oauth2", "authorization_code"),
        ("derivative", "password"),
        ("bankhub", "client_credentials"),
        ("vietqr", "client_credentials"),
        ("partner", "password"),
        ("partner", "refresh_token"),
    ] {
        let series = format!("khoa_tokens_issued_total{{dialect=\"{dialect}\",grant=\"{grant}\"}}");
        assert!(metrics.contains(&series), "{series} missing:\n{metrics}");
    }

    // ---- the admin CLI, its secrets on standard input, at trace level too ----
    let cli_dir = crate::cli::migrated().await;
    let cli_secret = "cli-client-secret-0123456789-abcdefghij";
    let cli_password = "cli user password 2718";
    secrets.add("CLI client secret", cli_secret);
    secrets.add("CLI user password", cli_password);
    let mut cli_output = String::new();
    for (args, stdin) in [
        (
            vec!["client", "add", "cli-svc", "--secret-stdin"],
            cli_secret,
        ),
        (vec!["user", "add", "carol"], cli_password),
        (vec!["user", "set-password", "carol"], cli_password),
        (
            vec!["client", "rotate-secret", "cli-svc", "--secret-stdin"],
            cli_secret,
        ),
    ] {
        let mut cmd = khoa_on(cli_dir.path());
        cmd.env("KHOA_LOG", "trace").env("KHOA_LOG_FORMAT", "json");
        let out = run(cmd, &args, Some(&format!("{stdin}\n"))).await;
        assert!(out.status.success(), "khoa {args:?}: {}", out.stderr);
        cli_output.push_str(&out.stdout);
        cli_output.push_str(&out.stderr);
    }
    let master_cli = std::fs::read_to_string(cli_dir.path().join("master.key")).unwrap();
    secrets.add("CLI master key", master_cli.trim());

    // ---- stop, and read everything they printed ----
    let master = std::fs::read_to_string(data.join("master.key")).expect("the demo's master key");
    secrets.add("master key", master.trim());
    demo.child.kill().await.unwrap();
    let log = demo.log.await.unwrap();
    let stdout = demo.stdout.await.unwrap();

    // The log was verbose, JSON, one object per line, one line per request with its id.
    assert!(log.lines().count() > 50, "trace level logs plenty:\n{log}");
    let mut requests = 0;
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if entry["target"] == "khoa::http" {
            requests += 1;
            for field in [
                "method",
                "route",
                "status",
                "latency_ms",
                "request_id",
                "dialect",
            ] {
                assert!(!entry[field].is_null(), "{field} missing: {line}");
            }
        }
    }
    assert!(requests >= 20, "{requests} request lines");
    assert!(log.contains("\"level\":\"TRACE\"") || log.contains("\"level\":\"DEBUG\""));

    // The search itself finds a leak in each encoding.
    let basic = STANDARD.encode(format!("{svc}:{svc_secret}"));
    for leak in [form_encode(&password), STANDARD.encode(&password), basic] {
        assert!(secrets.found(&format!("{{\"x\":\"{leak}\"}}")).is_some());
    }
    secrets.assert_absent(&log, "the demo's log");
    issued.assert_absent(&log, "the demo's log");
    issued.assert_absent(&stdout, "the demo's stdout");
    secrets.assert_absent(&cli_output, "the CLI's output");
    issued.assert_absent(&cli_output, "the CLI's output");
}
