//! `GET /openapi.json`: an OpenAPI 3.1 document that lists exactly the routes the router
//! serves, at their configured paths. (`tests/schemathesis/run.sh` checks the answers against
//! it.)

use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;

use crate::helpers::{spawn_app_with, spawn_demo_app, spawn_demo_app_with};

async fn document(app: &crate::helpers::TestApp) -> Value {
    let res = app.send(Method::GET, "/openapi.json", &[], None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    res.json().await.expect("the document is JSON")
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// Whether the router has a route for `method path`: anything but the fallback's 404 and
/// axum's 405.
async fn routed(app: &crate::helpers::TestApp, method: &str, path: &str) -> bool {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let res = app.send(method, path, &[], None).await;
    let status = res.status().as_u16();
    let body = res.text().await.unwrap_or_default();
    status != 405 && !(status == 404 && body.contains("\"not_found\""))
}

#[tokio::test]
async fn openapi_json_is_openapi_3_1_and_lists_every_route_the_demo_serves() {
    let app = spawn_demo_app().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    for scheme in ["client_basic", "bearer"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }

    // What `startup::router` and `dialects::routes` register for this configuration.
    let mut expected = BTreeSet::new();
    let mut add = |methods: &[&str], path: &str| {
        for m in methods {
            expected.insert((m.to_string(), path.to_owned()));
        }
    };
    add(&["POST"], "/connect/token");
    add(&["POST"], "/connect/revocation");
    add(&["POST"], "/connect/introspect");
    add(&["GET"], "/connect/revoked-jwts");
    add(&["POST"], "/oapi/auth/gen-secret-key/derivative");
    add(&["POST"], "/oapi/auth/gen-secret-key/underlying");
    add(&["POST"], "/v1/token");
    add(&["POST"], "/openapi/v1/auth/login");
    add(&["POST"], "/openapi/v1/auth/refresh");
    add(&["POST"], "/vqr/api/token_generate");
    add(&["POST"], "/bank/api/transaction-sync");
    add(
        &["GET", "POST", "PUT", "PATCH", "DELETE"],
        "/api/protected-resource",
    );
    add(&["GET", "POST"], "/connect/authorize");
    add(&["GET", "POST"], "/connect/userinfo");
    add(&["GET"], "/.well-known/jwks.json");
    add(&["GET"], "/.well-known/oauth-authorization-server");
    add(&["GET"], "/.well-known/openid-configuration");
    add(&["GET"], "/healthz");
    add(&["GET"], "/readyz");
    add(&["GET"], &app.config.metrics.path);
    add(&["GET"], "/openapi.json");
    assert_eq!(operations(&doc), expected);

    // And each documented operation really is routed (the probe does see the fallback).
    for (method, path) in &expected {
        assert!(
            routed(&app, method, path).await,
            "{method} {path} is not routed"
        );
    }
    assert!(!routed(&app, "GET", "/not-a-route").await);
    assert!(!routed(&app, "DELETE", "/healthz").await);
}

#[tokio::test]
async fn openapi_json_follows_configured_paths_and_leaves_disabled_dialects_out() {
    let app = spawn_demo_app_with(|c| {
        c.dialects
            .set("bankhub", "path", "/hub/v2/token")
            .set("vietqr", "base_path", "partner-vqr")
            .disable("partner");
    })
    .await;
    let ops = operations(&document(&app).await);
    assert!(ops.contains(&("POST".into(), "/hub/v2/token".into())));
    assert!(ops.contains(&("POST".into(), "/partner-vqr/api/token_generate".into())));
    assert!(
        !ops.iter()
            .any(|(_, p)| p == "/v1/token" || p.starts_with("/openapi/v1/"))
    );
    assert!(routed(&app, "POST", "/hub/v2/token").await);

    let plain = spawn_app_with(|_| {}).await;
    let ops = operations(&document(&plain).await);
    assert!(ops.contains(&("POST".into(), "/connect/token".into())));
    assert!(!ops.iter().any(|(_, p)| p.starts_with("/oapi/")));
}
