//! Seed 000, the derivative broker's login: the document's cURL request and answer, the
//! `ACCOUNT||KEYID||…` token layout, the OTP token that mutating requests must carry, and the
//! `OAPI_FNO_…` error envelope for every refusal, byte for byte.

use khoa_server::demo::{DERIVATIVE_PASSWORD, DERIVATIVE_USERNAME};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    PROTECTED_PATH, TestApp, cache_control, dialect_token_body, is_lower_hex, json_body,
    spawn_demo_app, spawn_demo_app_with, str_of, token_ok,
};

const DERIVATIVE_PATH: &str = "/oapi/auth/gen-secret-key/derivative";
const UNDERLYING_PATH: &str = "/oapi/auth/gen-secret-key/underlying";
const DERIVATIVE_CLIENT: &str = "oapi-derivative";

/// The document's cURL `-d` argument, whitespace and all.
const SEED_000_BODY: &str =
    "{\n    \"username\": \"022C099995\",\n    \"password\": \"123456aA@\"\n  }";

async fn login(app: &TestApp, username: &str, password: &str) -> Response {
    app.post_json(
        DERIVATIVE_PATH,
        &[],
        &json!({ "username": username, "password": password }),
    )
    .await
}

/// Splits `022C099995||KEYID||RANDOM`, asserting the documented layout; returns the KEYID.
fn key_id_of(token: &str) -> &str {
    let parts: Vec<&str> = token.split("||").collect();
    assert_eq!(parts.len(), 3, "ACCOUNT||KEYID||RANDOM: {token}");
    assert_eq!(parts[0], DERIVATIVE_USERNAME, "{token}");
    assert_eq!(parts[1].len(), 10, "a 10-letter KEYID: {token}");
    assert!(
        parts[1].bytes().all(|b| b.is_ascii_uppercase()),
        "the KEYID is upper-case letters: {token}"
    );
    assert!(
        !parts[2].is_empty() && parts[2].bytes().all(|b| b.is_ascii_alphanumeric()),
        "the random part is alphanumeric: {token}"
    );
    parts[1]
}

/// A successful login as the document shows it: 200, no-store, exactly its five fields in its
/// order, with their types and layouts. Returns the body.
async fn assert_documented_login(res: Response) -> Value {
    let body = dialect_token_body(
        res,
        StatusCode::OK,
        &[
            "access_token",
            "refresh_token",
            "expires_in",
            "otp_token",
            "token_type",
        ],
    )
    .await;
    assert!(body["expires_in"].is_u64(), "a number: {body}");
    assert_eq!(body["expires_in"], 28_800);
    assert_eq!(body["token_type"], "Bearer");
    let otp = body["otp_token"].as_str().expect("a string");
    assert_eq!(otp.len(), 32, "{otp}");
    assert!(is_lower_hex(otp), "32 lower-case hex digits: {otp}");
    let access = body["access_token"].as_str().expect("a string");
    let refresh = body["refresh_token"].as_str().expect("a string");
    assert_eq!(
        key_id_of(access),
        key_id_of(refresh),
        "one session, one KEYID"
    );
    assert_ne!(access, refresh);
    body
}

/// Seed 000's request, answered as documented; returns the body.
async fn documented_login(app: &TestApp) -> Value {
    assert_documented_login(app.post_json_raw(DERIVATIVE_PATH, &[], SEED_000_BODY).await).await
}

/// `POST` to the protected resource with this access token and, if given, this OTP token.
async fn post_with_otp(app: &TestApp, access: &str, otp: Option<&str>) -> StatusCode {
    let bearer = format!("Bearer {access}");
    let mut headers = vec![("Authorization", bearer.as_str())];
    if let Some(otp) = otp {
        headers.push(("x-otp-token", otp));
    }
    app.send(Method::POST, PROTECTED_PATH, &headers, None)
        .await
        .status()
}

/// The error envelope exactly as the document prints it (compact): `code`, `messageParams`
/// {`error`, `error_description`, `s`}, `params`, `source`, `message`, in that order.
fn envelope_text(description: &str) -> String {
    json!({
        "code": "OAPI_FNO_500",
        "messageParams": {
            "error": "server_error",
            "error_description": description,
            "s": 500,
        },
        "params": null,
        "source": "oapi-bridge-fno",
        "message": null,
    })
    .to_string()
}

/// The response is `status` with exactly the documented envelope around `description`.
async fn assert_envelope(res: Response, status: u16, description: &str) {
    let got = res.status().as_u16();
    let no_store = cache_control(&res) == Some("no-store");
    let text = res.text().await.expect("a body");
    assert_eq!(got, status, "{text}");
    assert_eq!(text, envelope_text(description), "byte for byte");
    assert!(no_store, "refusals are not cached either");
}

const WRONG_CREDENTIALS_VI: &str = "-107 Tên đăng nhập hoặc mật khẩu không đúng";

// ---- the documented request and answer ----

#[tokio::test]
async fn seed_000_curl_request_gets_the_documented_tokens() {
    let app = spawn_demo_app().await;

    let res = app.post_json_raw(DERIVATIVE_PATH, &[], SEED_000_BODY).await;

    assert_documented_login(res).await;
}

#[tokio::test]
async fn the_underlying_sibling_answers_in_the_same_shape_for_its_own_client() {
    let app = spawn_demo_app().await;

    let res = app.post_json_raw(UNDERLYING_PATH, &[], SEED_000_BODY).await;

    let body = assert_documented_login(res).await;
    let resource: Value = app
        .protected(str_of(&body, "access_token"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resource["client_id"], "oapi-underlying");
}

#[tokio::test]
async fn every_login_starts_a_new_session_with_new_secrets() {
    let app = spawn_demo_app().await;

    let first = documented_login(&app).await;
    let second = documented_login(&app).await;

    for field in ["access_token", "refresh_token", "otp_token"] {
        assert_ne!(first[field], second[field], "{field}");
    }
    assert_ne!(
        key_id_of(str_of(&first, "access_token")),
        key_id_of(str_of(&second, "access_token")),
        "a KEYID names one session"
    );
}

// ---- the access token and its OTP ----

#[tokio::test]
async fn the_access_token_alone_opens_the_protected_resource_for_reads() {
    let app = spawn_demo_app().await;
    let body = documented_login(&app).await;

    let res = app.protected(str_of(&body, "access_token")).await;

    let resource = json_body(res, StatusCode::OK).await;
    assert_eq!(resource["method"], "GET");
    assert_eq!(resource["client_id"], DERIVATIVE_CLIENT);
    assert_eq!(resource["token_format"], "account");
}

#[tokio::test]
async fn mutating_requests_need_the_sessions_otp_token() {
    let app = spawn_demo_app().await;
    let body = documented_login(&app).await;
    let bearer = format!("Bearer {}", str_of(&body, "access_token"));
    let otp = str_of(&body, "otp_token");
    let wrong_otp = "0".repeat(32);

    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let without = app
            .send(
                method.clone(),
                PROTECTED_PATH,
                &[("Authorization", &bearer)],
                None,
            )
            .await;
        let refusal = json_body(without, StatusCode::FORBIDDEN).await;
        assert_eq!(refusal["error"], "otp_required", "{refusal}");

        let wrong = app
            .send(
                method.clone(),
                PROTECTED_PATH,
                &[("Authorization", &bearer), ("x-otp-token", &wrong_otp)],
                None,
            )
            .await;
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN, "{method} wrong otp");

        let right = app
            .send(
                method.clone(),
                PROTECTED_PATH,
                &[("Authorization", &bearer), ("x-otp-token", otp)],
                None,
            )
            .await;
        let granted = json_body(right, StatusCode::OK).await;
        assert_eq!(granted["method"], method.as_str());
    }
}

#[tokio::test]
async fn another_sessions_otp_token_does_not_satisfy_this_one() {
    let app = spawn_demo_app().await;
    let mine = documented_login(&app).await;
    let other = documented_login(&app).await;

    let res = post_with_otp(
        &app,
        str_of(&mine, "access_token"),
        Some(str_of(&other, "otp_token")),
    )
    .await;

    assert_eq!(res, StatusCode::FORBIDDEN);
}

// ---- refresh through the OAuth 2.0 endpoint ----

#[tokio::test]
async fn a_refresh_through_connect_token_rotates_and_keeps_the_session_layout() {
    let app = spawn_demo_app().await;
    let first = documented_login(&app).await;
    let key_id = key_id_of(str_of(&first, "refresh_token")).to_owned();

    let res = app
        .refresh(DERIVATIVE_CLIENT, str_of(&first, "refresh_token"))
        .await;

    let second = token_ok(res).await;
    let (access, refresh) = (
        str_of(&second, "access_token"),
        str_of(&second, "refresh_token"),
    );
    assert_eq!(key_id_of(access), key_id, "the session keeps its KEYID");
    assert_eq!(key_id_of(refresh), key_id);
    assert_ne!(access, str_of(&first, "access_token"));
    assert_ne!(refresh, str_of(&first, "refresh_token"), "rotated");
    let otp = str_of(&second, "otp_token");
    assert_eq!(
        otp.len(),
        32,
        "the refreshed access token has its own otp: {second}"
    );
    assert_ne!(otp, str_of(&first, "otp_token"));
    // The new pair works: the new OTP opens mutations with the new access token, the old does not.
    assert_eq!(post_with_otp(&app, access, Some(otp)).await, StatusCode::OK);
    assert_eq!(
        post_with_otp(&app, access, Some(str_of(&first, "otp_token"))).await,
        StatusCode::FORBIDDEN
    );
}

// ---- the error envelope ----

#[tokio::test]
async fn a_wrong_password_gets_the_documented_envelope() {
    let app = spawn_demo_app().await;

    let res = login(&app, DERIVATIVE_USERNAME, "not-the-password").await;

    assert_envelope(res, 401, WRONG_CREDENTIALS_VI).await;
}

#[tokio::test]
async fn an_unknown_user_gets_the_same_envelope_as_a_wrong_password() {
    let app = spawn_demo_app().await;

    let res = login(&app, "099C000000", DERIVATIVE_PASSWORD).await;

    assert_envelope(res, 401, WRONG_CREDENTIALS_VI).await;
}

#[tokio::test]
async fn malformed_json_is_code_minus_100() {
    let app = spawn_demo_app().await;

    for body in [
        "{\"username\": \"022C099995\",",
        "[]",
        "username=022C099995",
    ] {
        let res = app.post_json_raw(DERIVATIVE_PATH, &[], body).await;

        assert_envelope(res, 400, "-100 Dữ liệu yêu cầu không hợp lệ").await;
    }
}

#[tokio::test]
async fn a_missing_field_is_code_minus_101_naming_it() {
    let app = spawn_demo_app().await;

    let no_password = app
        .post_json(
            DERIVATIVE_PATH,
            &[],
            &json!({ "username": DERIVATIVE_USERNAME }),
        )
        .await;
    let no_username = app
        .post_json(
            DERIVATIVE_PATH,
            &[],
            &json!({ "password": DERIVATIVE_PASSWORD }),
        )
        .await;

    assert_envelope(no_password, 400, "-101 Thiếu thông tin bắt buộc: password").await;
    assert_envelope(no_username, 400, "-101 Thiếu thông tin bắt buộc: username").await;
}

#[tokio::test]
async fn a_disabled_account_with_the_right_password_is_code_minus_108() {
    let app = spawn_demo_app().await;
    assert!(
        app.engine
            .admin()
            .set_user_disabled(DERIVATIVE_USERNAME, true)
            .await
            .unwrap()
    );

    let right = login(&app, DERIVATIVE_USERNAME, DERIVATIVE_PASSWORD).await;
    let wrong = login(&app, DERIVATIVE_USERNAME, "not-the-password").await;

    assert_envelope(right, 401, "-108 Tài khoản đã bị khóa").await;
    // Only whoever proved the password learns that the account is locked.
    assert_envelope(wrong, 401, WRONG_CREDENTIALS_VI).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_code_minus_102_with_413() {
    let app = spawn_demo_app_with(|c| c.http.max_body_bytes = 256).await;
    let body = json!({
        "username": DERIVATIVE_USERNAME,
        "password": DERIVATIVE_PASSWORD,
        "padding": "x".repeat(1024),
    });

    let res = app.post_json(DERIVATIVE_PATH, &[], &body).await;

    assert_envelope(res, 413, "-102 Dữ liệu yêu cầu quá lớn").await;
}

#[tokio::test]
async fn mirror_status_mode_answers_the_same_envelopes_with_http_500() {
    let app = spawn_demo_app_with(|c| {
        c.dialects.set("derivative", "http_status", "mirror");
    })
    .await;

    let wrong = login(&app, DERIVATIVE_USERNAME, "not-the-password").await;
    let malformed = app.post_json_raw(DERIVATIVE_PATH, &[], "{").await;
    let missing = app
        .post_json(
            DERIVATIVE_PATH,
            &[],
            &json!({ "username": DERIVATIVE_USERNAME }),
        )
        .await;

    assert_envelope(wrong, 500, WRONG_CREDENTIALS_VI).await;
    assert_envelope(malformed, 500, "-100 Dữ liệu yêu cầu không hợp lệ").await;
    assert_envelope(missing, 500, "-101 Thiếu thông tin bắt buộc: password").await;
    // Success is still a plain 200.
    documented_login(&app).await;
}

#[tokio::test]
async fn english_language_keeps_the_numeric_codes() {
    let app = spawn_demo_app_with(|c| {
        c.dialects.set("derivative", "language", "en");
    })
    .await;

    let wrong = login(&app, DERIVATIVE_USERNAME, "not-the-password").await;
    let malformed = app.post_json_raw(DERIVATIVE_PATH, &[], "{").await;

    assert_envelope(wrong, 401, "-107 Incorrect username or password").await;
    assert_envelope(
        malformed,
        400,
        "-100 The request body is not a valid JSON object",
    )
    .await;
}
