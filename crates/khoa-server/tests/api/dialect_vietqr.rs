//! Seed 003, VietQR's `token_generate`: the document's Java sample unchanged but for its base
//! URL, the `{}` body VietQR's own caller sends, `{"status": "FAILED", "message": …}` refusals,
//! and the sample Transaction Sync API the token guards, refusing in VietQR's error style.

use khoa_server::demo::{
    DERIVATIVE_PASSWORD, DERIVATIVE_USERNAME, VIETQR_PASSWORD, VIETQR_USERNAME,
};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_invalid_token, assert_keys, dialect_token_body, json_body, plain_basic,
    spawn_demo_app,
};

const TOKEN_PATH: &str = "/vqr/api/token_generate";
const SYNC_PATH: &str = "/bank/api/transaction-sync";
/// The header of the document's Java sample, verbatim.
const JAVA_SAMPLE_AUTHORIZATION: &str = "Basic Y3VzdG9tZXItdmlldHFydGVzdC11c2VyMjQ2ODpZM1Z6ZEc5dFpYSXRkbWxsZEhGeWRHVnpkQzExYzJWeU1qUTJPQT09";

async fn token_generate(app: &TestApp, headers: &[(&str, &str)], body: &str) -> Response {
    app.send(
        Method::POST,
        TOKEN_PATH,
        headers,
        Some(body.as_bytes().to_vec()),
    )
    .await
}

/// 200 with exactly `access_token`, `token_type: "Bearer"`, `expires_in: 300` (an integer).
async fn assert_token(res: Response) -> String {
    let body = dialect_token_body(
        res,
        StatusCode::OK,
        &["access_token", "token_type", "expires_in"],
    )
    .await;
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["expires_in"].is_u64(),
        "an integer, not a string: {body}"
    );
    assert_eq!(body["expires_in"], 300);
    let token = body["access_token"].as_str().expect("a string");
    assert!(!token.is_empty());
    token.to_owned()
}

/// `status` with exactly `{"status":"FAILED","message":code}`.
async fn assert_failed(res: Response, status: u16, code: &str) {
    let got = res.status().as_u16();
    let text = res.text().await.expect("a body");
    assert_eq!(got, status, "{text}");
    assert_eq!(
        text,
        json!({ "status": "FAILED", "message": code }).to_string()
    );
}

/// A transaction as VietQR's Transaction Sync contract sends it.
fn transaction() -> Value {
    json!({
        "bankaccount": "0123456789",
        "amount": 150000,
        "transType": "C",
        "content": "VQR thanh toan don hang 42",
        "transactionid": "FT24123456789",
        "transactiontime": 1_717_000_000_000_i64,
        "referencenumber": "FT24123456789",
        "orderId": "42",
    })
}

async fn sync(app: &TestApp, authorization: Option<&str>) -> Response {
    let header = authorization.map(|a| ("Authorization", a));
    app.post_json(SYNC_PATH, header.as_slice(), &transaction())
        .await
}

/// VietQR's refusal: 401 and exactly `error`, `errorReason: "E74"`, `toastMessage`, `object`.
async fn assert_sync_refused(res: Response) {
    let body = json_body(res, StatusCode::UNAUTHORIZED).await;
    assert_keys(&body, &["error", "errorReason", "toastMessage", "object"]);
    assert_eq!(body["error"], true);
    assert_eq!(body["errorReason"], "E74");
    assert!(
        body["toastMessage"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["object"].is_null(), "{body}");
}

async fn documented_token(app: &TestApp) -> String {
    assert_token(token_generate(app, &[("Authorization", JAVA_SAMPLE_AUTHORIZATION)], "").await)
        .await
}

// ---- token_generate ----

#[tokio::test]
async fn seed_003_java_sample_request_gets_the_documented_token() {
    let app = spawn_demo_app().await;

    // HttpURLConnection with doOutput and no explicit type sends this content type.
    let plain = token_generate(&app, &[("Authorization", JAVA_SAMPLE_AUTHORIZATION)], "").await;
    let java = token_generate(
        &app,
        &[
            ("Authorization", JAVA_SAMPLE_AUTHORIZATION),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        "",
    )
    .await;

    assert_token(plain).await;
    assert_token(java).await;
}

#[tokio::test]
async fn the_java_samples_header_is_the_demo_credential() {
    assert_eq!(
        JAVA_SAMPLE_AUTHORIZATION,
        plain_basic(VIETQR_USERNAME, VIETQR_PASSWORD)
    );
}

#[tokio::test]
async fn the_shape_vietqrs_caller_sends_works() {
    let app = spawn_demo_app().await;

    let res = token_generate(
        &app,
        &[
            ("Authorization", JAVA_SAMPLE_AUTHORIZATION),
            ("Content-Type", "application/json"),
        ],
        "{}",
    )
    .await;

    assert_token(res).await;
}

#[tokio::test]
async fn bad_credentials_are_401_e74() {
    let app = spawn_demo_app().await;
    let wrong_password = plain_basic(VIETQR_USERNAME, "not-the-password");
    let unknown_user = plain_basic("customer-unknown", VIETQR_PASSWORD);

    for headers in [
        vec![("Authorization", wrong_password.as_str())],
        vec![("Authorization", unknown_user.as_str())],
        vec![("Authorization", "Basic !!!")],
        vec![("Authorization", "Bearer abc")],
        vec![],
    ] {
        let res = token_generate(&app, &headers, "").await;

        assert_failed(res, 401, "E74").await;
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400_e46() {
    let app = spawn_demo_app().await;

    for body in ["username=x", "[]", "{"] {
        let res = token_generate(
            &app,
            &[
                ("Authorization", JAVA_SAMPLE_AUTHORIZATION),
                ("Content-Type", "application/json"),
            ],
            body,
        )
        .await;

        assert_failed(res, 400, "E46").await;
    }
}

// ---- the Transaction Sync API the token guards ----

#[tokio::test]
async fn the_token_is_accepted_by_transaction_sync() {
    let app = spawn_demo_app().await;
    let token = documented_token(&app).await;

    let res = sync(&app, Some(&format!("Bearer {token}"))).await;

    let body = json_body(res, StatusCode::OK).await;
    assert_keys(&body, &["error", "errorReason", "toastMessage", "object"]);
    assert_eq!(body["error"], false);
    assert!(body["errorReason"].is_null(), "{body}");
    assert_eq!(body["object"]["reftransactionid"], "FT24123456789");
    // The same token opens the generic protected resource, too.
    assert_eq!(app.protected(&token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn transaction_sync_refuses_a_bad_or_missing_token_in_vietqrs_style() {
    let app = spawn_demo_app().await;
    let token = documented_token(&app).await;
    let tampered = format!("Bearer {}x", token);

    for authorization in [
        None,
        Some("Bearer not-a-token-khoa-issued"),
        Some(tampered.as_str()),
        Some(JAVA_SAMPLE_AUTHORIZATION),
    ] {
        assert_sync_refused(sync(&app, authorization).await).await;
    }
}

#[tokio::test]
async fn transaction_sync_with_a_good_token_and_a_bad_body_is_400_e46() {
    let app = spawn_demo_app().await;
    let token = documented_token(&app).await;
    let bearer = format!("Bearer {token}");

    let res = app
        .post_json_raw(SYNC_PATH, &[("Authorization", &bearer)], "not json")
        .await;

    let body = json_body(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["error"], true);
    assert_eq!(body["errorReason"], "E46");
}

/// Found by schemathesis: a `transactionid` that is not a string was answered 200 with
/// `reftransactionid: ""`.
#[tokio::test]
async fn transaction_sync_refuses_a_transactionid_that_is_not_a_string() {
    let app = spawn_demo_app().await;
    let token = documented_token(&app).await;
    let bearer = format!("Bearer {token}");
    for id in [json!({}), json!(42), json!(null)] {
        let mut tx = transaction();
        tx["transactionid"] = id;

        let res = app
            .post_json(SYNC_PATH, &[("Authorization", &bearer)], &tx)
            .await;

        let body = json_body(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["errorReason"], "E46", "{body}");
    }
}

#[tokio::test]
async fn a_revoked_session_is_refused_at_the_resource_and_at_transaction_sync() {
    let app = spawn_demo_app().await;
    // A family-bound token: the derivative dialect's session.
    let login = app
        .post_json(
            "/oapi/auth/gen-secret-key/derivative",
            &[],
            &json!({ "username": DERIVATIVE_USERNAME, "password": DERIVATIVE_PASSWORD }),
        )
        .await;
    let body = json_body(login, StatusCode::OK).await;
    let access = body["access_token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {access}");
    assert_eq!(app.protected(&access).await.status(), StatusCode::OK);
    assert_eq!(sync(&app, Some(&bearer)).await.status(), StatusCode::OK);
    let database = app.database().await;
    let tokens = &database.tokens;
    let family = tokens
        .find_access_token(&access)
        .await
        .unwrap()
        .expect("the access token is stored by its hash")
        .record
        .family_id
        .expect("a password-grant token belongs to a session");

    assert!(
        tokens
            .revoke_family(&family, app.engine.now())
            .await
            .unwrap()
    );

    assert_invalid_token(app.protected(&access).await).await;
    assert_sync_refused(sync(&app, Some(&bearer)).await).await;
}
