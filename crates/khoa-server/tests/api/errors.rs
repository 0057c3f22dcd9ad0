//! Every way a request can be refused: RFC 6749 §5.2 at the token endpoint (status, `error`
//! code, `Cache-Control: no-store`) and RFC 6750 §3 at the protected resource (401 with a
//! `Bearer` challenge). None of them is ever a 500.

use khoa_core::model::{AccessTokenFormat, GrantType};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    FORM_CONTENT_TYPE, TestApp, assert_invalid_token, basic_auth, form_body, jwt_header,
    oauth_error, spawn_app, spawn_app_with, token_ok, www_authenticate,
};

const PUBLIC: &str = "mobile-app";
const CONFIDENTIAL: &str = "backend";
const USER: &str = "alice@example.test";
const PASSWORD: &str = "alice's password";

/// A public client for the password grant, a confidential one for everything, and a user.
async fn app_with_clients() -> (TestApp, String) {
    let app = spawn_app().await;
    app.add_public_client(PUBLIC, "read offline_access", |_| {})
        .await;
    let secret = app
        .add_confidential_client(CONFIDENTIAL, "read offline_access", |_| {})
        .await;
    app.add_user(USER, PASSWORD, None).await;
    (app, secret)
}

// ---- invalid_request ----

#[tokio::test]
async fn a_missing_grant_type_is_invalid_request() {
    let (app, _) = app_with_clients().await;

    let res = app
        .token(&[
            ("client_id", PUBLIC),
            ("username", USER),
            ("password", PASSWORD),
        ])
        .await;

    oauth_error(res, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_json_body_is_invalid_request() {
    let (app, _) = app_with_clients().await;
    let json = serde_json::json!({
        "grant_type": "password", "client_id": PUBLIC, "username": USER, "password": PASSWORD,
    });

    let res = app
        .token_raw(
            Some("application/json"),
            json.to_string().into_bytes(),
            None,
        )
        .await;

    oauth_error(res, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_form_body_without_a_content_type_is_invalid_request() {
    let (app, _) = app_with_clients().await;
    let body = form_body(&[
        ("grant_type", "password"),
        ("client_id", PUBLIC),
        ("username", USER),
        ("password", PASSWORD),
    ]);

    let res = app.token_raw(None, body.into_bytes(), None).await;

    oauth_error(res, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_repeated_parameter_is_invalid_request() {
    let (app, _) = app_with_clients().await;
    let body = format!(
        "grant_type=password&grant_type=password&{}",
        form_body(&[
            ("client_id", PUBLIC),
            ("username", USER),
            ("password", PASSWORD)
        ])
    );

    let res = app
        .token_raw(Some(FORM_CONTENT_TYPE), body.into_bytes(), None)
        .await;

    let err = oauth_error(res, 400, "invalid_request").await;
    assert!(
        err["error_description"]
            .as_str()
            .unwrap()
            .contains("grant_type"),
        "the description names the repeated parameter: {err}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_invalid_request() {
    let (app, _) = app_with_clients().await;
    let prefix = form_body(&[
        ("grant_type", "password"),
        ("client_id", PUBLIC),
        ("password", PASSWORD),
    ]);

    // Percent-encoded bytes that decode to invalid UTF-8 …
    let encoded = format!("{prefix}&username=%FF%FE");
    let res = app
        .token_raw(Some(FORM_CONTENT_TYPE), encoded.into_bytes(), None)
        .await;
    oauth_error(res, 400, "invalid_request").await;

    // … and a raw 0xFF byte in the body.
    let mut raw = format!("{prefix}&username=").into_bytes();
    raw.push(0xFF);
    let res = app.token_raw(Some(FORM_CONTENT_TYPE), raw, None).await;
    oauth_error(res, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_utf8_password_with_reserved_characters_round_trips_through_the_form() {
    // The positive counterpart of the test above: percent-decoding and `+` handled exactly.
    let (app, _) = app_with_clients().await;
    let password = "mật khẩu & = + % ? 🔑";
    app.add_user("viet@example.test", password, None).await;

    let res = app
        .password_grant(PUBLIC, "viet@example.test", password, None)
        .await;

    token_ok(res).await;
}

#[tokio::test]
async fn a_missing_username_or_password_is_invalid_request() {
    let (app, _) = app_with_clients().await;

    let no_username = app
        .token(&[
            ("grant_type", "password"),
            ("client_id", PUBLIC),
            ("password", PASSWORD),
        ])
        .await;
    oauth_error(no_username, 400, "invalid_request").await;

    let no_password = app
        .token(&[
            ("grant_type", "password"),
            ("client_id", PUBLIC),
            ("username", USER),
        ])
        .await;
    oauth_error(no_password, 400, "invalid_request").await;
}

#[tokio::test]
async fn basic_credentials_and_a_body_secret_together_are_invalid_request() {
    let (app, secret) = app_with_clients().await;

    let res = app
        .token_basic(
            CONFIDENTIAL,
            &secret,
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", &secret),
            ],
        )
        .await;

    oauth_error(res, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_body_client_id_that_contradicts_basic_credentials_is_invalid_request() {
    let (app, secret) = app_with_clients().await;

    let res = app
        .token_basic(
            CONFIDENTIAL,
            &secret,
            &[("grant_type", "client_credentials"), ("client_id", PUBLIC)],
        )
        .await;

    oauth_error(res, 400, "invalid_request").await;
}

// ---- 413 ----

#[tokio::test]
async fn a_body_over_the_limit_is_413_not_500() {
    let app = spawn_app_with(|c| c.http.max_body_bytes = 1024).await;
    let body = format!("grant_type=password&padding={}", "a".repeat(4096));

    let res = app
        .token_raw(Some(FORM_CONTENT_TYPE), body.into_bytes(), None)
        .await;

    oauth_error(res, 413, "invalid_request").await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413_not_500() {
    // No Content-Length: the limit must hold while the body streams in.
    let app = spawn_app_with(|c| c.http.max_body_bytes = 1024).await;
    let addr = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST /connect/token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {FORM_CONTENT_TYPE}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..4 {
        request.extend_from_slice(b"400\r\n");
        request.extend_from_slice(&[b'a'; 1024]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");

    // The server may answer before it has read everything; a failed write is not the point.
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;

    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 413"),
        "expected 413, got: {response}"
    );
}

// ---- invalid_client ----

#[tokio::test]
async fn bad_basic_credentials_are_401_invalid_client_with_a_challenge() {
    let (app, _) = app_with_clients().await;

    let res = app
        .token_basic(
            CONFIDENTIAL,
            "not-the-secret",
            &[("grant_type", "client_credentials")],
        )
        .await;

    let challenge = www_authenticate(&res).expect("RFC 6749 §5.2: WWW-Authenticate after Basic");
    assert!(challenge.starts_with("Basic"), "{challenge}");
    oauth_error(res, 401, "invalid_client").await;
}

#[tokio::test]
async fn a_malformed_authorization_header_is_401_invalid_client_with_a_challenge() {
    let (app, _) = app_with_clients().await;

    let res = app
        .token_raw(
            Some(FORM_CONTENT_TYPE),
            b"grant_type=client_credentials".to_vec(),
            Some("Basic !!!not-base64"),
        )
        .await;

    assert!(www_authenticate(&res).is_some());
    oauth_error(res, 401, "invalid_client").await;
}

#[tokio::test]
async fn bad_post_credentials_are_401_invalid_client_without_a_challenge() {
    let (app, _) = app_with_clients().await;

    let res = app
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", CONFIDENTIAL),
            ("client_secret", "not-the-secret"),
        ])
        .await;

    assert_eq!(
        www_authenticate(&res),
        None,
        "no Basic attempted, so no Basic challenge"
    );
    oauth_error(res, 401, "invalid_client").await;
}

#[tokio::test]
async fn an_unknown_or_missing_client_is_invalid_client() {
    let (app, _) = app_with_clients().await;
    let grant = [
        ("grant_type", "password"),
        ("username", USER),
        ("password", PASSWORD),
    ];

    let unknown = app
        .token(&[&grant[..], &[("client_id", "no-such-client")]].concat())
        .await;
    oauth_error(unknown, 401, "invalid_client").await;

    let unknown_basic = app
        .token_basic("no-such-client", "some-secret", &grant)
        .await;
    oauth_error(unknown_basic, 401, "invalid_client").await;

    let missing = app.token(&grant).await;
    oauth_error(missing, 401, "invalid_client").await;
}

#[tokio::test]
async fn a_confidential_client_without_its_secret_is_invalid_client() {
    let (app, _) = app_with_clients().await;

    let res = app
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", CONFIDENTIAL),
        ])
        .await;

    oauth_error(res, 401, "invalid_client").await;
}

// ---- invalid_grant, unauthorized_client, unsupported_grant_type ----

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_are_the_same_invalid_grant() {
    let (app, _) = app_with_clients().await;

    let wrong_password = app
        .password_grant(PUBLIC, USER, "not alice's password", None)
        .await;
    let wrong = oauth_error(wrong_password, 400, "invalid_grant").await;

    let unknown_user = app
        .password_grant(PUBLIC, "mallory@example.test", PASSWORD, None)
        .await;
    let unknown = oauth_error(unknown_user, 400, "invalid_grant").await;

    assert_eq!(
        wrong["error_description"], unknown["error_description"],
        "the answer does not reveal which usernames exist"
    );
}

#[tokio::test]
async fn an_unknown_refresh_token_is_invalid_grant() {
    let (app, _) = app_with_clients().await;

    let res = app.refresh(PUBLIC, "not-a-refresh-token").await;

    oauth_error(res, 400, "invalid_grant").await;
}

#[tokio::test]
async fn a_refresh_token_of_another_client_is_invalid_grant() {
    let (app, secret) = app_with_clients().await;
    let issued = token_ok(
        app.token_basic(
            CONFIDENTIAL,
            &secret,
            &[
                ("grant_type", "password"),
                ("username", USER),
                ("password", PASSWORD),
                ("scope", "read offline_access"),
            ],
        )
        .await,
    )
    .await;

    let res = app
        .refresh(PUBLIC, issued["refresh_token"].as_str().unwrap())
        .await;

    oauth_error(res, 400, "invalid_grant").await;
}

#[tokio::test]
async fn an_access_token_is_not_a_refresh_token_nor_the_reverse() {
    let (app, _) = app_with_clients().await;
    let issued = token_ok(
        app.password_grant(PUBLIC, USER, PASSWORD, Some("read offline_access"))
            .await,
    )
    .await;

    let res = app
        .refresh(PUBLIC, issued["access_token"].as_str().unwrap())
        .await;
    oauth_error(res, 400, "invalid_grant").await;
    assert_invalid_token(
        app.protected(issued["refresh_token"].as_str().unwrap())
            .await,
    )
    .await;
}

#[tokio::test]
async fn a_disabled_user_can_no_longer_log_in_or_refresh() {
    let (app, _) = app_with_clients().await;
    let issued = token_ok(
        app.password_grant(PUBLIC, USER, PASSWORD, Some("read offline_access"))
            .await,
    )
    .await;
    assert!(
        app.engine
            .admin()
            .set_user_disabled(USER, true)
            .await
            .unwrap()
    );

    oauth_error(
        app.password_grant(PUBLIC, USER, PASSWORD, None).await,
        400,
        "invalid_grant",
    )
    .await;
    oauth_error(
        app.refresh(PUBLIC, issued["refresh_token"].as_str().unwrap())
            .await,
        400,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn a_grant_the_client_is_not_registered_for_is_unauthorized_client() {
    let app = spawn_app().await;
    let secret = app
        .add_confidential_client("service-only", "read", |c| {
            c.grant_types = vec![GrantType::ClientCredentials];
        })
        .await;
    app.add_user(USER, PASSWORD, None).await;

    let res = app
        .token_basic(
            "service-only",
            &secret,
            &[
                ("grant_type", "password"),
                ("username", USER),
                ("password", PASSWORD),
            ],
        )
        .await;

    oauth_error(res, 400, "unauthorized_client").await;
}

#[tokio::test]
async fn the_implicit_grant_is_unsupported_grant_type() {
    let (app, _) = app_with_clients().await;

    let res = app
        .token(&[("grant_type", "implicit"), ("client_id", PUBLIC)])
        .await;

    oauth_error(res, 400, "unsupported_grant_type").await;
}

/// RFC 6749 §5.2: a client not registered for the code grant is `unauthorized_client`.
#[tokio::test]
async fn authorization_code_for_a_client_without_that_grant_is_unauthorized_client() {
    let (app, _) = app_with_clients().await;

    let res = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", PUBLIC),
            ("code", "abc"),
            ("redirect_uri", "https://example.test/cb"),
        ])
        .await;

    oauth_error(res, 400, "unauthorized_client").await;
}

// ---- the protected resource (RFC 6750 §3) ----

#[tokio::test]
async fn the_resource_without_a_token_is_401_with_a_bearer_challenge() {
    let app = spawn_app().await;

    assert_invalid_token(app.protected_with(None).await).await;
}

#[tokio::test]
async fn a_malformed_authorization_header_is_401_with_a_bearer_challenge() {
    let app = spawn_app().await;

    for header in [
        "Bearer two parts",
        "Bearer",
        "Bearer ",
        "Basic xyz",
        "Token abc",
    ] {
        assert_invalid_token(app.protected_with(Some(header)).await).await;
    }
}

#[tokio::test]
async fn a_garbage_token_is_401_with_a_bearer_challenge() {
    let app = spawn_app().await;

    for token in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."] {
        assert_invalid_token(app.protected(token).await).await;
    }
}

#[tokio::test]
async fn an_expired_jwt_is_401_with_a_bearer_challenge() {
    // The clock counts whole seconds: a 2 s TTL lives more than 1 s, enough for the first check.
    let app = spawn_app().await;
    let secret = app
        .add_confidential_client("short-lived", "read", |c| c.policy.access_ttl = 2)
        .await;
    let body = token_ok(
        app.token_basic(
            "short-lived",
            &secret,
            &[("grant_type", "client_credentials")],
        )
        .await,
    )
    .await;
    let jwt = body["access_token"].as_str().unwrap();
    assert_eq!(app.protected(jwt).await.status(), 200);

    app.advance(3);

    assert_invalid_token(app.protected(jwt).await).await;
}

#[tokio::test]
async fn tokens_of_a_family_revoked_by_refresh_token_reuse_are_401() {
    let app = spawn_app().await;
    for (id, format) in [
        ("opaque-app", AccessTokenFormat::Opaque),
        ("jwt-app", AccessTokenFormat::Jwt),
    ] {
        app.add_public_client(id, "read offline_access", |c| {
            c.policy.access_format = format;
            c.policy.reuse_window = 0;
        })
        .await;
    }
    app.add_user(USER, PASSWORD, None).await;

    for id in ["opaque-app", "jwt-app"] {
        let first = token_ok(
            app.password_grant(id, USER, PASSWORD, Some("read offline_access"))
                .await,
        )
        .await;
        let access = first["access_token"].as_str().unwrap();
        let refresh = first["refresh_token"].as_str().unwrap();
        assert_eq!(app.protected(access).await.status(), 200, "{id}");
        let second = token_ok(app.refresh(id, refresh).await).await;
        let second_access = second["access_token"].as_str().unwrap();

        // Reuse of the redeemed token: the whole family is revoked.
        oauth_error(app.refresh(id, refresh).await, 400, "invalid_grant").await;

        assert_invalid_token(app.protected(access).await).await;
        assert_invalid_token(app.protected(second_access).await).await;
    }
}

#[tokio::test]
async fn a_jwt_signed_by_another_khoa_instance_is_401() {
    let app = spawn_app().await;
    // Same issuer and audience: only the signing key differs.
    let issuer = app.issuer();
    let other = spawn_app_with(|c| c.issuer = Some(issuer)).await;
    let secret = other
        .add_confidential_client("intruder", "read", |_| {})
        .await;
    let body = token_ok(
        other
            .token_basic("intruder", &secret, &[("grant_type", "client_credentials")])
            .await,
    )
    .await;
    let jwt = body["access_token"].as_str().unwrap();
    assert_eq!(
        other.protected(jwt).await.status(),
        200,
        "valid where it was made"
    );
    assert!(
        !app.jwks_kids()
            .await
            .contains(&jwt_header(jwt)["kid"].as_str().unwrap().to_owned())
    );

    assert_invalid_token(app.protected(jwt).await).await;
}

#[tokio::test]
async fn a_secret_with_reserved_characters_authenticates_through_form_encoded_basic() {
    // A secret with reserved characters still authenticates through Basic (RFC 6749 §2.3.1).
    let app = spawn_app().await;
    let secret = "s3cret with spaces:colons&ampersands%percent+plus";
    app.add_confidential_client_with_secret("odd id", "read", secret, |_| {})
        .await;

    let res = app
        .token_raw(
            Some(FORM_CONTENT_TYPE),
            b"grant_type=client_credentials".to_vec(),
            Some(&basic_auth("odd id", secret)),
        )
        .await;

    token_ok(res).await;
}
