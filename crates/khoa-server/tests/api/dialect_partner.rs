//! Seed 002, the encrypted partner API: a partner client written here encrypts its payloads
//! (`hex(IV || AES-256-CBC(json))` under its key, header `Partner-Code`), logs in, refreshes
//! with rotation; every envelope that does not open gets one identical answer (no padding
//! oracle); keys rotate with an overlap; and `khoa partner …` manages all of it.

use khoa_core::envelope::seal_hex;
use khoa_core::model::{AccessTokenFormat, RefreshIssuance, RefreshTokenFormat};
use khoa_server::demo::{
    BANKHUB_CLIENT, BANKHUB_SECRET, PARTNER_CLIENT, PARTNER_CLIENT_SECRET, PARTNER_CODE,
    PARTNER_KEY_HEX, PARTNER_PASSWORD, PARTNER_USERNAME,
};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::cli::{field, ok};
use crate::helpers::{
    TestApp, assert_invalid_token, assert_keys, dialect_token_body, is_jwt, is_lower_hex,
    json_body, jwt_header, spawn_app_in_with, spawn_demo_app, str_of,
};

const LOGIN_PATH: &str = "/openapi/v1/auth/login";
const REFRESH_PATH: &str = "/openapi/v1/auth/refresh";

// ---- the partner client ----

fn demo_key() -> [u8; 32] {
    key_from_hex(PARTNER_KEY_HEX)
}

fn key_from_hex(hex_key: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut key).expect("a 64-hex-digit key");
    key
}

/// What a partner's client sends as `data`: the payload sealed under `key` with a fresh IV.
fn seal(key: &[u8; 32], plaintext: &[u8]) -> String {
    seal_hex(key, &rand::random::<[u8; 16]>(), plaintext)
}

fn seal_json(key: &[u8; 32], payload: &Value) -> String {
    seal(key, payload.to_string().as_bytes())
}

fn demo_login_payload() -> Value {
    json!({
        "username": PARTNER_USERNAME,
        "password": PARTNER_PASSWORD,
        "client_id": PARTNER_CLIENT,
        "client_secret": PARTNER_CLIENT_SECRET,
    })
}

/// `POST path` with `Partner-Code: code` (none when `None`) and this raw body, as JSON.
async fn post(app: &TestApp, path: &str, code: Option<&str>, body: &str) -> Response {
    let header = code.map(|c| ("Partner-Code", c));
    app.post_json_raw(path, header.as_slice(), body).await
}

/// `POST path` with `{"data": data}` as the document's samples send it.
async fn post_data(app: &TestApp, path: &str, code: &str, data: &str) -> Response {
    post(app, path, Some(code), &json!({ "data": data }).to_string()).await
}

async fn login(app: &TestApp, code: &str, key: &[u8; 32], payload: &Value) -> Response {
    post_data(app, LOGIN_PATH, code, &seal_json(key, payload)).await
}

async fn refresh(app: &TestApp, code: &str, key: &[u8; 32], refresh_token: &str) -> Response {
    let payload = json!({ "refresh_token": refresh_token });
    post_data(app, REFRESH_PATH, code, &seal_json(key, &payload)).await
}

/// The documented success: 200, no-store, plain JSON with exactly the five fields, JWTs.
async fn assert_tokens(res: Response) -> Value {
    let body = dialect_token_body(
        res,
        StatusCode::OK,
        &[
            "access_token",
            "expires_in",
            "refresh_token",
            "refresh_expires_in",
            "token_type",
        ],
    )
    .await;
    assert!(is_jwt(str_of(&body, "access_token")), "{body}");
    let refresh = str_of(&body, "refresh_token");
    assert!(
        is_jwt(refresh),
        "the document's \"JWT Refresh Token\": {body}"
    );
    assert_eq!(jwt_header(refresh)["typ"], "rt+jwt");
    assert_ne!(jwt_header(str_of(&body, "access_token"))["typ"], "rt+jwt");
    assert!(body["expires_in"].as_i64().is_some_and(|n| n > 0), "{body}");
    assert!(
        body["refresh_expires_in"].as_i64().is_some_and(|n| n > 0),
        "{body}"
    );
    assert_eq!(body["token_type"], "Bearer");
    body
}

/// A refusal in the dialect's shape `{"status", "error", "message"}`; returns the raw text.
async fn assert_refusal(res: Response, status: u16, error: &str) -> String {
    let got = res.status().as_u16();
    let text = res.text().await.expect("a body");
    let body: Value = serde_json::from_str(&text).expect("a JSON body");
    assert_eq!(got, status, "{text}");
    assert_keys(&body, &["status", "error", "message"]);
    assert_eq!(body["status"], status, "{text}");
    assert_eq!(body["error"], error, "{text}");
    assert!(body["message"].is_string(), "{text}");
    text
}

/// A partner of our own, bound to a fresh confidential client with JWT tokens and no refresh
/// reuse window (a replayed refresh token fails at once), and a user for its logins.
async fn own_partner(app: &TestApp, code: &str, key: [u8; 32]) -> Value {
    let (client_id, secret) = (
        format!("{code}-client"),
        format!("{code}-secret-0123456789abcdef0123456789"),
    );
    app.add_confidential_client_with_secret(&client_id, "partner", &secret, |c| {
        c.policy.access_format = AccessTokenFormat::Jwt;
        c.policy.refresh = RefreshIssuance::Always;
        c.policy.refresh_format = RefreshTokenFormat::Jwt;
        c.policy.reuse_window = 0;
    })
    .await;
    let username = format!("merchant-of-{code}");
    app.add_user(&username, "merchant's password", None).await;
    app.engine
        .tokens()
        .partners()
        .create(code, "our own partner", &client_id, Some(key))
        .await
        .expect("the partner is created");
    json!({
        "username": username,
        "password": "merchant's password",
        "client_id": client_id,
        "client_secret": secret,
    })
}

// ---- login, the token, refresh ----

#[tokio::test]
async fn a_login_sealed_under_the_demo_key_gets_jwt_tokens() {
    let app = spawn_demo_app().await;

    let res = login(&app, PARTNER_CODE, &demo_key(), &demo_login_payload()).await;

    let body = assert_tokens(res).await;
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["refresh_expires_in"], 86_400);
}

#[tokio::test]
async fn the_partner_access_token_opens_the_protected_resource() {
    let app = spawn_demo_app().await;
    let body =
        assert_tokens(login(&app, PARTNER_CODE, &demo_key(), &demo_login_payload()).await).await;

    let res = app.protected(str_of(&body, "access_token")).await;

    let resource = json_body(res, StatusCode::OK).await;
    assert_eq!(resource["client_id"], PARTNER_CLIENT);
    assert_eq!(resource["token_format"], "jwt");
}

#[tokio::test]
async fn the_refresh_token_is_not_a_bearer_token() {
    let app = spawn_demo_app().await;
    let body =
        assert_tokens(login(&app, PARTNER_CODE, &demo_key(), &demo_login_payload()).await).await;

    let res = app.protected(str_of(&body, "refresh_token")).await;

    assert_invalid_token(res).await;
}

#[tokio::test]
async fn refresh_rotates_and_the_old_refresh_token_then_fails() {
    let app = spawn_demo_app().await;
    let key = [0x42; 32];
    let payload = own_partner(&app, "ROTATING", key).await;
    let first = assert_tokens(login(&app, "ROTATING", &key, &payload).await).await;
    let old = str_of(&first, "refresh_token");

    let second = assert_tokens(refresh(&app, "ROTATING", &key, old).await).await;

    let new = str_of(&second, "refresh_token");
    assert_ne!(new, old, "a new refresh token");
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(
        app.protected(str_of(&second, "access_token"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_refusal(
        refresh(&app, "ROTATING", &key, old).await,
        401,
        "invalid_grant",
    )
    .await;
    // Replaying a spent token is taken for theft: the whole session ends with it.
    assert_refusal(
        refresh(&app, "ROTATING", &key, new).await,
        401,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn the_demo_partner_can_refresh_too() {
    let app = spawn_demo_app().await;
    let first =
        assert_tokens(login(&app, PARTNER_CODE, &demo_key(), &demo_login_payload()).await).await;

    let res = refresh(
        &app,
        PARTNER_CODE,
        &demo_key(),
        str_of(&first, "refresh_token"),
    )
    .await;

    let second = assert_tokens(res).await;
    assert_ne!(second["refresh_token"], first["refresh_token"]);
}

#[tokio::test]
async fn upper_case_hex_is_accepted() {
    let app = spawn_demo_app().await;
    let data = seal_json(&demo_key(), &demo_login_payload()).to_uppercase();

    let res = post_data(&app, LOGIN_PATH, PARTNER_CODE, &data).await;

    assert_tokens(res).await;
}

// ---- envelopes that do not open: one answer for all ----

#[tokio::test]
async fn every_envelope_that_does_not_open_gets_the_identical_answer() {
    let app = spawn_demo_app().await;
    let key = demo_key();
    for path in [LOGIN_PATH, REFRESH_PATH] {
        let payload = if path == LOGIN_PATH {
            demo_login_payload()
        } else {
            json!({ "refresh_token": "eyJhbGciOi.x.y" })
        };
        let good = seal_json(&key, &payload);
        let tampered = {
            let mut bytes = hex::decode(&good).unwrap();
            let last_block = bytes.len() - 16;
            bytes[last_block + 5] ^= 0x01;
            hex::encode(bytes)
        };
        let cases: Vec<(&str, &str, String)> = vec![
            ("tampered ciphertext", PARTNER_CODE, tampered),
            ("wrong key", PARTNER_CODE, seal_json(&[0x24; 32], &payload)),
            ("wrong partner code", "NOT_A_PARTNER", good.clone()),
            ("bad hex", PARTNER_CODE, format!("zz{}", &good[2..])),
            ("IV only", PARTNER_CODE, good[..32].to_owned()),
            (
                "not whole blocks",
                PARTNER_CODE,
                good[..good.len() - 2].to_owned(),
            ),
            ("empty plaintext", PARTNER_CODE, seal(&key, b"")),
            (
                "not JSON",
                PARTNER_CODE,
                seal(&key, b"username=a&password=b"),
            ),
            ("a JSON array", PARTNER_CODE, seal(&key, b"[1,2,3]")),
            // No ciphertext at all is one more that does not open, not a malformed body.
            ("empty data", PARTNER_CODE, String::new()),
        ];

        let mut answers = Vec::new();
        for (case, code, data) in cases {
            let res = post_data(&app, path, code, &data).await;
            let status = res.status();
            let text = res.text().await.unwrap();
            answers.push((case, status, text));
        }

        let (_, status, text) = &answers[0];
        assert_eq!(*status, StatusCode::UNAUTHORIZED, "{path}: {text}");
        let body: Value = serde_json::from_str(text).unwrap();
        assert_eq!(body["error"], "invalid_data", "{text}");
        for (case, s, t) in &answers {
            assert_eq!(
                (s, t),
                (status, text),
                "{path}, {case}: the same status and body"
            );
        }
    }
}

// ---- other refusals ----

#[tokio::test]
async fn a_missing_partner_code_header_is_400() {
    let app = spawn_demo_app().await;
    let body = json!({ "data": seal_json(&demo_key(), &demo_login_payload()) }).to_string();

    let missing = post(&app, LOGIN_PATH, None, &body).await;
    let blank = post(&app, LOGIN_PATH, Some("  "), &body).await;

    assert_refusal(missing, 400, "missing_partner_code").await;
    assert_refusal(blank, 400, "missing_partner_code").await;
}

#[tokio::test]
async fn a_body_without_a_data_string_is_400() {
    let app = spawn_demo_app().await;
    let sealed = seal_json(&demo_key(), &demo_login_payload());

    for body in [
        "not json at all".to_owned(),
        "[]".to_owned(),
        "{}".to_owned(),
        json!({ "payload": sealed }).to_string(),
        json!({ "data": 42 }).to_string(),
    ] {
        let res = post(&app, LOGIN_PATH, Some(PARTNER_CODE), &body).await;

        assert_refusal(res, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn a_valid_envelope_missing_a_field_is_400_naming_it() {
    let app = spawn_demo_app().await;
    let key = demo_key();

    for field in ["username", "password", "client_id", "client_secret"] {
        let mut payload = demo_login_payload();
        payload.as_object_mut().unwrap().remove(field);

        let text = assert_refusal(
            login(&app, PARTNER_CODE, &key, &payload).await,
            400,
            "invalid_request",
        )
        .await;

        assert!(text.contains(field), "{field}: {text}");
    }
    let text = assert_refusal(
        post_data(&app, REFRESH_PATH, PARTNER_CODE, &seal(&key, b"{}")).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(text.contains("refresh_token"), "{text}");
}

#[tokio::test]
async fn a_wrong_password_is_401() {
    let app = spawn_demo_app().await;
    let mut payload = demo_login_payload();
    payload["password"] = json!("not the password");

    let res = login(&app, PARTNER_CODE, &demo_key(), &payload).await;

    assert_refusal(res, 401, "invalid_grant").await;
}

#[tokio::test]
async fn a_wrong_client_secret_is_401() {
    let app = spawn_demo_app().await;
    let mut payload = demo_login_payload();
    payload["client_secret"] = json!("not-the-secret-0123456789abcdefghij");

    let res = login(&app, PARTNER_CODE, &demo_key(), &payload).await;

    assert_refusal(res, 401, "invalid_client").await;
}

#[tokio::test]
async fn a_login_for_a_client_that_is_not_the_partners_is_401() {
    let app = spawn_demo_app().await;
    // Another real client with its real secret: the envelope opens, but the partner may act
    // for its own client only.
    let mut payload = demo_login_payload();
    payload["client_id"] = json!(BANKHUB_CLIENT);
    payload["client_secret"] = json!(BANKHUB_SECRET);

    let res = login(&app, PARTNER_CODE, &demo_key(), &payload).await;

    assert_refusal(res, 401, "invalid_client").await;
}

#[tokio::test]
async fn a_refresh_token_of_another_partners_client_is_refused() {
    let app = spawn_demo_app().await;
    let key = [0x77; 32];
    own_partner(&app, "OTHER", key).await;
    let demo =
        assert_tokens(login(&app, PARTNER_CODE, &demo_key(), &demo_login_payload()).await).await;

    let res = refresh(&app, "OTHER", &key, str_of(&demo, "refresh_token")).await;

    assert_refusal(res, 401, "invalid_grant").await;
}

// ---- key rotation ----

#[tokio::test]
async fn after_a_rotation_with_overlap_old_and_new_keys_both_work() {
    let app = spawn_demo_app().await;
    let old = [0x11; 32];
    let payload = own_partner(&app, "OVERLAP", old).await;

    let new_hex = app
        .engine
        .tokens()
        .partners()
        .rotate_key("OVERLAP", 3600)
        .await
        .unwrap()
        .expect("the partner exists");

    let new = key_from_hex(&new_hex);
    assert_ne!(new, old);
    assert_tokens(login(&app, "OVERLAP", &old, &payload).await).await;
    assert_tokens(login(&app, "OVERLAP", &new, &payload).await).await;
}

#[tokio::test]
async fn after_a_rotation_without_overlap_the_old_key_stops_at_once() {
    let app = spawn_demo_app().await;
    let old = [0x33; 32];
    let payload = own_partner(&app, "NO_OVERLAP", old).await;
    assert_tokens(login(&app, "NO_OVERLAP", &old, &payload).await).await;

    let new_hex = app
        .engine
        .tokens()
        .partners()
        .rotate_key("NO_OVERLAP", 0)
        .await
        .unwrap()
        .expect("the partner exists");

    assert_refusal(
        login(&app, "NO_OVERLAP", &old, &payload).await,
        401,
        "invalid_data",
    )
    .await;
    assert_tokens(login(&app, "NO_OVERLAP", &key_from_hex(&new_hex), &payload).await).await;
}

#[tokio::test]
async fn rotating_the_key_of_an_unknown_partner_finds_nothing() {
    let app = spawn_demo_app().await;

    let rotated = app
        .engine
        .tokens()
        .partners()
        .rotate_key("NOBODY", 60)
        .await
        .unwrap();

    assert!(rotated.is_none());
}

// ---- the CLI ----

fn assert_hex_key(key: &str) {
    assert_eq!(key.len(), 64, "{key}");
    assert!(is_lower_hex(key), "{key}");
}

#[tokio::test]
async fn cli_partner_verbs_add_list_rotate_and_remove() {
    let dir = crate::cli::migrated().await;
    let d = dir.path();
    let client = ok(
        d,
        &[
            "client",
            "add",
            "p1",
            "--grant-types",
            "password,refresh_token",
        ],
        None,
    )
    .await;
    let secret = field(&client, "client_secret");

    let added = ok(d, &["partner", "add", "P1", "--client-id", "p1"], None).await;
    let first = field(&added, "key_hex");
    assert_hex_key(&first);

    let listed = ok(d, &["partner", "list"], None).await;
    assert!(listed.lines().any(|l| l.starts_with("P1\tp1")), "{listed}");
    assert!(!listed.contains(&first), "no key material is listed");
    assert_eq!(listed.matches("current").count(), 1, "{listed}");

    let rotated = ok(d, &["partner", "rotate-key", "P1", "--overlap", "60"], None).await;
    let second = field(&rotated, "key_hex");
    assert_hex_key(&second);
    assert_ne!(second, first);
    let listed = ok(d, &["partner", "list"], None).await;
    assert!(
        !listed.contains(&first) && !listed.contains(&second),
        "{listed}"
    );
    assert_eq!(listed.matches("current").count(), 1, "{listed}");
    assert_eq!(listed.matches("valid until").count(), 1, "{listed}");

    // What the CLI wrote is what the server opens envelopes with: both keys, in the overlap.
    let app = spawn_app_in_with(dir, |c| {
        c.dialects.enable("partner");
    })
    .await;
    app.add_user("merchant", "merchant's password", None).await;
    let payload = json!({
        "username": "merchant",
        "password": "merchant's password",
        "client_id": "p1",
        "client_secret": secret,
    });
    for key in [&first, &second] {
        let res = login(&app, "P1", &key_from_hex(key), &payload).await;
        // The CLI's default policy: a JWT access token, refresh only for `offline_access`.
        let body = json_body(res, StatusCode::OK).await;
        assert!(is_jwt(str_of(&body, "access_token")), "{body}");
    }
    let stopped = app.stop().await;
    let d = stopped.dir.path();

    let removed = ok(d, &["partner", "remove", "P1"], None).await;
    assert!(removed.contains("P1"), "{removed}");
    let listed = ok(d, &["partner", "list"], None).await;
    assert_eq!(listed.trim(), "", "no partner left");
}
