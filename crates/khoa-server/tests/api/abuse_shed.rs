//! Load shedding of password logins (issue 7): verification runs on a bounded Argon2 pool with
//! a bounded queue; a login beyond both is answered at once with 503 and `Retry-After`, in the
//! dialect's own shape, while the admitted ones still succeed.
//!
//! The server here gets one hashing slot, a queue of one, and an Argon2 cost high enough (tens
//! of milliseconds) that a burst of concurrent logins cannot all be admitted.

use khoa_server::demo::{
    DERIVATIVE_PASSWORD, DERIVATIVE_USERNAME, OAUTH2_PASSWORD, OAUTH2_PUBLIC_CLIENT,
    OAUTH2_USERNAME, PARTNER_CLIENT, PARTNER_CLIENT_SECRET, PARTNER_CODE, PARTNER_KEY_HEX,
    PARTNER_PASSWORD, PARTNER_USERNAME,
};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{FORM_CONTENT_TYPE, TestApp, assert_keys, form_body, spawn_demo_app_with};

const BURST: usize = 12;

/// The demo, with one Argon2 slot, a queue of one, and a hash slow enough to queue behind.
async fn spawn_tight_app() -> TestApp {
    spawn_demo_app_with(|c| {
        c.password_hash.memory_kib = 32 * 1024;
        c.password_hash.iterations = 3;
        c.password_hash.max_concurrent = 1;
        c.password_hash.max_queue = 1;
    })
    .await
}

/// Sends every request at once; the status, `Retry-After` and body of every answer.
async fn answers(requests: Vec<RequestBuilder>) -> Vec<(StatusCode, Option<String>, Value)> {
    let mut set = tokio::task::JoinSet::new();
    for req in requests {
        set.spawn(req.send());
    }
    let mut out = Vec::new();
    while let Some(sent) = set.join_next().await {
        let res = sent.unwrap().expect("the login request completes");
        let status = res.status();
        let retry_after = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = res.json().await.expect("a JSON body");
        out.push((status, retry_after, body));
    }
    out
}

/// At least one login was admitted and at least one shed; every shed one carries
/// `Retry-After`. Returns the bodies of the shed ones.
fn shed_bodies(all: &[(StatusCode, Option<String>, Value)], ok: StatusCode) -> Vec<Value> {
    let admitted = all.iter().filter(|(s, ..)| *s == ok).count();
    let shed: Vec<_> = all
        .iter()
        .filter(|(s, ..)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(admitted >= 1, "some logins are admitted: {all:?}");
    assert!(
        !shed.is_empty(),
        "a burst beyond pool and queue is shed: {all:?}"
    );
    assert_eq!(admitted + shed.len(), all.len(), "nothing else: {all:?}");
    for (_, retry_after, body) in &shed {
        let secs: u64 = retry_after
            .as_deref()
            .unwrap_or_else(|| panic!("503 without Retry-After: {body}"))
            .parse()
            .expect("Retry-After in whole seconds");
        assert!(secs >= 1);
    }
    shed.into_iter().map(|(.., body)| body.clone()).collect()
}

#[tokio::test]
async fn a_burst_of_oauth2_password_logins_is_shed_with_rfc_6749_503s() {
    let app = spawn_tight_app().await;

    let form = form_body(&[
        ("grant_type", "password"),
        ("client_id", OAUTH2_PUBLIC_CLIENT),
        ("username", OAUTH2_USERNAME),
        ("password", OAUTH2_PASSWORD),
    ]);
    let burst = (0..BURST)
        .map(|_| {
            app.client
                .post(app.url("/connect/token"))
                .header("Content-Type", FORM_CONTENT_TYPE)
                .body(form.clone())
        })
        .collect();
    let all = answers(burst).await;

    for body in shed_bodies(&all, StatusCode::OK) {
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        assert!(body["error_description"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn a_burst_of_derivative_logins_is_shed_with_the_envelope_s_503_code() {
    let app = spawn_tight_app().await;
    let login = json!({ "username": DERIVATIVE_USERNAME, "password": DERIVATIVE_PASSWORD });

    let burst = (0..BURST)
        .map(|_| {
            app.client
                .post(app.url("/oapi/auth/gen-secret-key/derivative"))
                .json(&login)
        })
        .collect();
    let all = answers(burst).await;

    for body in shed_bodies(&all, StatusCode::OK) {
        // The OAPI_FNO envelope: the family code, the numeric code leading the description.
        assert_eq!(body["code"], "OAPI_FNO_500", "{body}");
        let description = body["messageParams"]["error_description"].as_str().unwrap();
        assert!(description.starts_with("-503 "), "{body}");
    }
}

#[tokio::test]
async fn a_burst_of_partner_logins_is_shed_in_the_partner_shape() {
    let app = spawn_tight_app().await;
    let mut key = [0u8; 32];
    hex::decode_to_slice(PARTNER_KEY_HEX, &mut key).unwrap();
    let payload = json!({
        "username": PARTNER_USERNAME,
        "password": PARTNER_PASSWORD,
        "client_id": PARTNER_CLIENT,
        "client_secret": PARTNER_CLIENT_SECRET,
    })
    .to_string();

    let burst = (0..BURST)
        .map(|_| {
            let iv = rand::random::<[u8; 16]>();
            let data = khoa_core::envelope::seal_hex(&key, &iv, payload.as_bytes());
            app.client
                .post(app.url("/openapi/v1/auth/login"))
                .header("Partner-Code", PARTNER_CODE)
                .json(&json!({ "data": data }))
        })
        .collect();
    let all = answers(burst).await;

    for body in shed_bodies(&all, StatusCode::OK) {
        assert_keys(&body, &["status", "error", "message"]);
        assert_eq!(body["status"], 503);
        assert_eq!(body["error"], "temporarily_unavailable");
    }
}
