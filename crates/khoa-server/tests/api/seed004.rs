//! Seed 004 (TripData authentication API): its sample cURL request, byte for byte, and the
//! response it documents.

use khoa_server::demo;
use serde_json::Value;
use std::collections::BTreeSet;

use crate::helpers::{FORM_CONTENT_TYPE, jwt_header, spawn_app, token_ok};

/// What `curl --data-urlencode` sends for the document's four parameters, in its order.
pub const SEED_004_BODY: &str = "grant_type=password&client_id=YOUR_CLIENT_ID&password=%40Password123&username=account%40tripdata.vn";

#[tokio::test]
async fn seed_004_sample_request_gets_the_documented_response() {
    // Arrange
    let app = spawn_app().await;
    demo::seed(&app.engine).await.expect("demo seed");

    // Act
    let res = app
        .token_raw(Some(FORM_CONTENT_TYPE), SEED_004_BODY.into(), None)
        .await;

    // Assert
    let content_type = res.headers()[reqwest::header::CONTENT_TYPE].clone();
    assert_eq!(content_type, "application/json");
    let body = token_ok(res).await;
    let keys: BTreeSet<&str> = body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "access_token",
            "expires_in",
            "token_type",
            "refresh_token",
            "scope"
        ]),
        "exactly the documented fields: {body}"
    );
    assert!(body["expires_in"].is_number(), "{body}");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["token_type"], "Bearer");
    // The sample's tokens are 43 base64url characters (256 random bits): opaque, like ours.
    for field in ["access_token", "refresh_token"] {
        let token = body[field].as_str().expect("a string");
        assert_eq!(token.len(), 43, "{field}: {token}");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{field}: {token}"
        );
    }
    assert_eq!(
        body["scope"],
        "client-data config-data hub-data offline_access user-data"
    );
}

#[tokio::test]
async fn seed_004_access_token_opens_the_protected_resource() {
    // Arrange
    let app = spawn_app().await;
    demo::seed(&app.engine).await.expect("demo seed");
    let body = token_ok(
        app.token_raw(Some(FORM_CONTENT_TYPE), SEED_004_BODY.into(), None)
            .await,
    )
    .await;
    let user = app
        .engine
        .admin()
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.username == demo::OAUTH2_USERNAME)
        .expect("the demo user exists");

    // Act
    let res = app.protected(body["access_token"].as_str().unwrap()).await;

    // Assert
    assert_eq!(res.status(), 200);
    let resource: Value = res.json().await.unwrap();
    assert_eq!(resource["sub"], user.id.as_str());
    assert_eq!(resource["client_id"], demo::OAUTH2_PUBLIC_CLIENT);
    assert_eq!(resource["scope"], demo::OAUTH2_SCOPES);
}

#[tokio::test]
async fn demo_service_client_gets_a_jwt_that_opens_the_resource_and_whose_kid_is_published() {
    // Arrange
    let app = spawn_app().await;
    demo::seed(&app.engine).await.expect("demo seed");

    // Act
    let res = app
        .token_basic(
            demo::OAUTH2_SERVICE_CLIENT,
            demo::OAUTH2_SERVICE_SECRET,
            &[("grant_type", "client_credentials")],
        )
        .await;

    // Assert
    let body = token_ok(res).await;
    let jwt = body["access_token"].as_str().unwrap();
    let header = jwt_header(jwt);
    let kid = header["kid"]
        .as_str()
        .expect("the JWT header names its kid");
    assert!(
        app.jwks_kids().await.iter().any(|k| k == kid),
        "the JWKS lists {kid}"
    );
    let resource = app.protected(jwt).await;
    assert_eq!(resource.status(), 200);
    let resource: Value = resource.json().await.unwrap();
    assert_eq!(resource["sub"], demo::OAUTH2_SERVICE_CLIENT);
    assert_eq!(resource["client_id"], demo::OAUTH2_SERVICE_CLIENT);
    assert_eq!(resource["scope"], "hub-data");
    assert_eq!(resource["token_format"], "jwt");
}
