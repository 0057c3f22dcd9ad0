//! Dialects from definition files (`dialects.dir`), served by the generic adapter through the
//! real server: Casso from `dialects/casso.toml` alone, a copy changed by its author, and the
//! definitions start-up and `khoa dialect check` refuse.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{fails, khoa, ok, run};
use crate::helpers::{TestApp, cache_control, keys_in_order, spawn_app_with, test_config};

const API_KEY: &str = "casso-api-key-0123456789abcdefghijklmnop";

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../dialects")
        .join(name)
}

/// A directory holding these definition files.
fn dialects_dir(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("definition written");
    }
    dir
}

fn casso_text() -> String {
    std::fs::read_to_string(example("casso.toml")).expect("dialects/casso.toml")
}

async fn casso_app(text: String) -> (TestApp, tempfile::TempDir) {
    let defs = dialects_dir(&[("casso.toml", text)]);
    let dir = defs.path().to_owned();
    let app = spawn_app_with(|c| c.dialects.dir = Some(dir)).await;
    app.add_confidential_client_with_secret("casso", "read", API_KEY, |_| {})
        .await;
    (app, defs)
}

async fn body(res: reqwest::Response) -> Value {
    res.json().await.expect("a JSON body")
}

#[tokio::test]
async fn casso_serves_from_its_definition_file_alone() {
    let (app, _defs) = casso_app(casso_text()).await;

    let res = app
        .post_json("/v1/token", &[], &json!({"code": API_KEY}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(cache_control(&res), Some("no-store"));
    let b = body(res).await;
    assert_eq!(keys_in_order(&b), ["access_token", "expires_in"]);
    assert!(b["expires_in"].is_i64(), "a number, as Casso sends it: {b}");
    // The token is an ordinary khoa token: the protected resource takes it.
    let token = b["access_token"].as_str().unwrap();
    assert_eq!(app.protected(token).await.status(), 200);

    let res = app
        .post_json("/v1/token", &[], &json!({"code": "wrong"}))
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.text().await.unwrap(),
        r#"{"error":401,"message":"Unauthorized Access","data":null}"#
    );
    for bad in [r#"{}"#, r#"{"code": 5}"#, "not json", r#"["code"]"#] {
        let res = app.post_json_raw("/v1/token", &[], bad).await;
        assert_eq!(res.status(), 400, "{bad}");
        assert_eq!(
            body(res).await,
            json!({"error": 400, "message": "Bad Request", "data": null}),
            "{bad}"
        );
    }
    // Refusals of the HTTP layer take the definition's shape too.
    let res = app.send(Method::GET, "/v1/token", &[], None).await;
    assert_eq!(res.status(), 405);
    assert_eq!(body(res).await["error"], 405);
    let huge = format!(
        r#"{{"code": "{}"}}"#,
        "x".repeat(app.config.http.max_body_bytes)
    );
    let res = app.post_json_raw("/v1/token", &[], &huge).await;
    assert_eq!(res.status(), 413);
    assert_eq!(body(res).await["error"], 413);
}

#[tokio::test]
async fn an_edited_copy_serves_its_new_wire_shape_without_code() {
    let text = casso_text()
        .replace("path = \"/v1/token\"", "path = \"/casso/v2/token\"")
        .replace(
            "access_token = \"{access_token}\"",
            "accessToken = \"{access_token}\"",
        )
        .replace(
            "expires_in = \"{expires_in}\"",
            "expiresIn = \"{expires_in|string}\"",
        );
    let (app, _defs) = casso_app(text).await;
    let res = app
        .post_json("/casso/v2/token", &[], &json!({"code": API_KEY}))
        .await;
    assert_eq!(res.status(), 200);
    let b = body(res).await;
    assert_eq!(keys_in_order(&b), ["accessToken", "expiresIn"]);
    assert!(b["expiresIn"].is_string(), "{b}");
    let res = app
        .post_json("/v1/token", &[], &json!({"code": API_KEY}))
        .await;
    assert_eq!(res.status(), 404, "the old path is gone");
}

/// What `khoa serve` would say about a `dialects.dir` holding these files.
async fn start_refused(
    files: &[(&str, String)],
    tweak: impl FnOnce(&mut khoa_server::config::Config),
) -> String {
    let defs = dialects_dir(files);
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path());
    config.dialects.dir = Some(defs.path().to_owned());
    tweak(&mut config);
    let err = khoa_server::startup::App::build(config)
        .await
        .err()
        .expect("start-up refuses the definitions");
    assert!(
        !data.path().join("khoa.db").exists(),
        "a refused definition creates no database"
    );
    err.to_string()
}

#[tokio::test]
async fn start_up_refuses_a_definition_naming_file_line_and_key() {
    let text = casso_text().replace("body = \"json\"", "body = \"json\"\nbodi = \"form\"");
    let e = start_refused(&[("casso.toml", text.clone())], |_| {}).await;
    let line = text[..text.find("bodi").unwrap()].matches('\n').count() + 1;
    assert!(e.contains("casso.toml"), "{e}");
    assert!(e.contains(&format!("line {line}")), "{e}");
    assert!(e.contains("key endpoints.token.bodi"), "{e}");
}

#[tokio::test]
async fn start_up_refuses_a_path_another_dialect_serves() {
    let e = start_refused(&[("casso.toml", casso_text())], |c| {
        c.dialects.enable("bankhub");
    })
    .await;
    assert!(e.contains("/v1/token") && e.contains("bankhub"), "{e}");
    let e = start_refused(
        &[
            ("a.toml", casso_text()),
            (
                "b.toml",
                casso_text().replace("name = \"casso\"", "name = \"other\""),
            ),
        ],
        |_| {},
    )
    .await;
    assert!(e.contains("b.toml") && e.contains("dialect casso"), "{e}");
    let e = start_refused(
        &[(
            "x.toml",
            casso_text().replace("path = \"/v1/token\"", "path = \"/healthz\""),
        )],
        |_| {},
    )
    .await;
    assert!(e.contains("/healthz"), "{e}");
}

#[tokio::test]
async fn even_oauth2_is_a_definition_a_file_replaces_and_a_missing_dir_is_refused() {
    // Every built-in is a definition: a file of its name replaces it, OAuth 2.0's included.
    let defs = dialects_dir(&[(
        "mine.toml",
        casso_text().replace("name = \"casso\"", "name = \"oauth2\""),
    )]);
    let dir = defs.path().to_owned();
    let app = spawn_app_with(|c| c.dialects.dir = Some(dir)).await;
    let res = app.token(&[("grant_type", "client_credentials")]).await;
    assert_eq!(res.status(), 404, "the built-in token endpoint is replaced");
    let res = app.post_json("/v1/token", &[], &json!({"code": "x"})).await;
    assert_eq!(res.status(), 401, "the file's endpoint answers");
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path());
    config.dialects.dir = Some(data.path().join("nope"));
    let e = khoa_server::startup::App::build(config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("dialects.dir") && e.contains("nope"), "{e}");
}

#[tokio::test]
async fn dialect_check_prints_the_endpoints_or_the_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(
        dir.path(),
        &["dialect", "check", example("casso.toml").to_str().unwrap()],
        None,
    )
    .await;
    assert!(out.contains("casso"), "{out}");
    assert!(out.contains("POST /v1/token"), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        casso_text().replace("\"{expires_in}\"", "\"{expires}\""),
    )
    .unwrap();
    let err = fails(
        dir.path(),
        &["dialect", "check", bad.to_str().unwrap()],
        None,
    )
    .await;
    assert!(err.contains("bad.toml"), "{err}");
    assert!(
        err.contains("key endpoints.token.response.body.expires_in"),
        "{err}"
    );
    assert!(err.contains("{expires}"), "{err}");
    assert!(err.contains(", line "), "{err}");
}

#[tokio::test]
async fn dialect_list_show_and_schema() {
    let defs = dialects_dir(&[("casso.toml", casso_text())]);
    let mut cmd = khoa();
    cmd.env("KHOA_DIALECTS__DIR", defs.path());
    let out = run(cmd, &["dialect", "list"], None).await;
    assert!(out.status.success(), "{}", out.stderr);
    let line = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {}", out.stdout))
            .to_owned()
    };
    assert!(line("casso").contains("file") && line("casso").contains("POST /v1/token"));
    assert!(line("oauth2").contains("built-in") && line("oauth2").contains("enabled"));
    assert!(line("bankhub").contains("disabled"));

    let mut cmd = khoa();
    cmd.env("KHOA_DIALECTS__DIR", defs.path());
    let shown = run(cmd, &["dialect", "show", "casso"], None).await;
    assert_eq!(shown.stdout, casso_text());

    let out = run(khoa(), &["dialect", "schema"], None).await;
    let schema: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert!(schema["properties"]["endpoints"].is_object(), "{schema}");
    let no = run(khoa(), &["dialect", "show", "nosuch"], None).await;
    assert_eq!(no.status.code(), Some(1));
    assert!(no.stderr.contains("no dialect nosuch"), "{}", no.stderr);
}

const BANKHUB: &str = include_str!("../../../khoa-dialect/dialects/bankhub.toml");

#[tokio::test]
async fn a_file_named_like_a_built_in_definition_replaces_it() {
    // The acceptance of dialects as data: a built-in's definition, copied, with another path
    // and another answer field, and no code.
    let text = BANKHUB
        .replace("path = \"/v1/token\"", "path = \"/hub/v2/token\"")
        .replace(
            "ttl = \"{expires_in}\"",
            "expires_in_ms = \"{expires_in|ms}\"",
        )
        .replace("status = 201", "status = 200");
    let defs = dialects_dir(&[("bankhub.toml", text)]);
    let dir = defs.path().to_owned();
    let app = spawn_app_with(|c| {
        c.dialects.dir = Some(dir);
        c.dialects.enable("bankhub");
    })
    .await;
    let secret = app.add_confidential_client("hub", "read", |_| {}).await;
    let res = app
        .send(
            Method::POST,
            "/hub/v2/token",
            &[("authorization", &crate::helpers::basic_auth("hub", &secret))],
            None,
        )
        .await;
    assert_eq!(res.status(), 200, "the file's status, at the file's path");
    let b = body(res).await;
    assert_eq!(keys_in_order(&b), ["code", "access_token", "expires_in_ms"]);
    assert_eq!(b["expires_in_ms"].as_i64().unwrap() % 1000, 0, "{b}");
    let old = app
        .send(
            Method::POST,
            "/v1/token",
            &[("authorization", &crate::helpers::basic_auth("hub", &secret))],
            None,
        )
        .await;
    assert_eq!(old.status(), 404, "the built-in's path is not served");
}

#[tokio::test]
async fn dialect_show_prints_a_built_in_definition() {
    let out = run(khoa(), &["dialect", "show", "bankhub"], None).await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, BANKHUB);
    let list = run(khoa(), &["dialect", "list"], None).await;
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("bankhub "))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("built-in") && line.contains("disabled") && line.contains("POST /v1/token"),
        "{line}"
    );
}

#[tokio::test]
async fn dialect_check_refuses_a_path_this_configuration_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crate::cli::khoa_on(dir.path());
    cmd.env("KHOA_DIALECTS__BANKHUB__ENABLED", "true");
    let out = run(
        cmd,
        &["dialect", "check", example("casso.toml").to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    assert!(
        out.stderr.contains("/v1/token") && out.stderr.contains("bankhub"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn the_openapi_document_describes_a_file_dialect_from_its_definition() {
    let (app, _defs) = casso_app(casso_text()).await;
    let doc = body(app.send(Method::GET, "/openapi.json", &[], None).await).await;
    let op = &doc["paths"]["/v1/token"]["post"];
    assert_eq!(op["tags"], json!(["casso"]), "{op}");
    let request = &op["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(request["required"], json!(["code"]), "{request}");
    assert_eq!(request["properties"]["code"]["type"], "string");
    let ok = &op["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(
        ok["required"],
        json!(["access_token", "expires_in"]),
        "{ok}"
    );
    assert_eq!(
        ok["properties"]["expires_in"]["type"],
        json!(["integer", "null"])
    );
    for status in ["400", "401", "405", "413", "429", "500", "503"] {
        let e = &op["responses"][status]["content"]["application/json"]["schema"];
        assert_eq!(
            e["properties"]["error"]["type"],
            json!(["integer", "null"]),
            "{status}: {e}"
        );
        assert_eq!(e["properties"]["data"]["type"], "null", "{status}: {e}");
    }
    // What the document says is what the server answers.
    let res = app
        .post_json("/v1/token", &[], &json!({"code": "wrong"}))
        .await;
    assert!(op["responses"][res.status().as_str()].is_object());
}

#[tokio::test]
async fn a_files_settings_come_from_its_configuration_table() {
    let defs = dialects_dir(&[("casso.toml", casso_text())]);
    let dir = defs.path().to_owned();
    // `[dialects.casso] client = "casso-prod"`: the endpoint is bound to that client now.
    let app = spawn_app_with(|c| {
        c.dialects.dir = Some(dir);
        c.dialects.set("casso", "client", "casso-prod");
    })
    .await;
    app.add_confidential_client_with_secret("casso-prod", "read", API_KEY, |_| {})
        .await;
    let res = app
        .post_json("/v1/token", &[], &json!({"code": API_KEY}))
        .await;
    assert_eq!(res.status(), 200, "the configured client's secret is taken");

    // `enabled = false` leaves the file unserved.
    let dir = defs.path().to_owned();
    let off = spawn_app_with(|c| {
        c.dialects.dir = Some(dir);
        c.dialects.disable("casso");
    })
    .await;
    let res = off
        .post_json("/v1/token", &[], &json!({"code": API_KEY}))
        .await;
    assert_eq!(res.status(), 404);

    // A setting the file does not have, and a table of no dialect, stop start-up.
    let e = start_refused(&[("casso.toml", casso_text())], |c| {
        c.dialects.set("casso", "clinet", "x");
    })
    .await;
    assert!(e.contains("dialects.casso.clinet"), "{e}");
    assert!(e.contains("did you mean dialects.casso.client?"), "{e}");
    let e = start_refused(&[("casso.toml", casso_text())], |c| {
        c.dialects.enable("caso");
    })
    .await;
    assert!(e.contains("did you mean dialects.casso?"), "{e}");
}
