//! The standard surface beside the token endpoint: revocation (RFC 7009) at
//! `/connect/revocation`, introspection (RFC 7662) at `/connect/introspect`, and discovery
//! (RFC 8414, OpenID Connect Discovery) — over every kind of token the dialects mint.

use khoa_core::model::AccessTokenFormat;
use khoa_server::demo::{
    BANKHUB_CLIENT, BANKHUB_SECRET, OAUTH2_PASSWORD, OAUTH2_PUBLIC_CLIENT, OAUTH2_SERVICE_CLIENT,
    OAUTH2_SERVICE_SECRET, OAUTH2_USERNAME,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use crate::helpers::{
    FORM_CONTENT_TYPE, TestApp, access_token_of, assert_invalid_token, basic_auth, cache_control,
    form_body, json_body, oauth_error, plain_basic, refresh_token_of, spawn_app, spawn_demo_app,
    str_of, token_ok,
};

const REVOCATION_PATH: &str = "/connect/revocation";
const INTROSPECTION_PATH: &str = "/connect/introspect";
const RS: &str = "resource-server";
const RS_SECRET: &str = "resource-server-secret-0123456789abcdef";

impl TestApp {
    /// `POST path` with a form body and, when given, this `Authorization` header.
    async fn post_form(&self, path: &str, form: &[(&str, &str)], auth: Option<&str>) -> Response {
        let mut headers = vec![(CONTENT_TYPE.as_str(), FORM_CONTENT_TYPE)];
        if let Some(a) = auth {
            headers.push((AUTHORIZATION.as_str(), a));
        }
        self.send(
            Method::POST,
            path,
            &headers,
            Some(form_body(form).into_bytes()),
        )
        .await
    }

    /// RFC 7009 revocation by a public client (its `client_id` in the body).
    async fn revoke_as_public(&self, client_id: &str, token: &str, hint: Option<&str>) -> Response {
        let mut form = vec![("token", token), ("client_id", client_id)];
        if let Some(h) = hint {
            form.push(("token_type_hint", h));
        }
        self.post_form(REVOCATION_PATH, &form, None).await
    }

    /// RFC 7662 introspection by the resource server, `client_secret_basic`.
    async fn introspect(&self, token: &str) -> Value {
        let res = self
            .post_form(
                INTROSPECTION_PATH,
                &[("token", token)],
                Some(&basic_auth(RS, RS_SECRET)),
            )
            .await;
        assert_eq!(cache_control(&res), Some("no-store"));
        json_body(res, StatusCode::OK).await
    }

    async fn add_resource_server(&self) {
        self.add_confidential_client_with_secret(RS, "", RS_SECRET, |_| {})
            .await;
    }

    /// A user session of public client `app` with JWT access tokens and a refresh token.
    async fn session(&self) -> Value {
        self.add_public_client("app", "read offline_access", |_| {})
            .await;
        self.add_user("alice", "alice-password", None).await;
        token_ok(
            self.password_grant("app", "alice", "alice-password", None)
                .await,
        )
        .await
    }
}

fn assert_inactive(body: &Value) {
    assert_eq!(body, &serde_json::json!({ "active": false }));
}

// ---- revocation (RFC 7009) ----

#[tokio::test]
async fn a_revoked_jwt_access_token_is_refused_by_the_resource() {
    let app = spawn_app().await;
    let tokens = app.session().await;
    let access = access_token_of(&tokens);
    assert_eq!(app.protected(&access).await.status(), StatusCode::OK);

    let res = app
        .revoke_as_public("app", &access, Some("access_token"))
        .await;

    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(cache_control(&res), Some("no-store"));
    assert_invalid_token(app.protected(&access).await).await;
}

#[tokio::test]
async fn revoking_the_refresh_token_ends_the_session_and_its_access_tokens() {
    let app = spawn_app().await;
    let tokens = app.session().await;

    // A misleading hint is only a search order (RFC 7009 §2.1).
    let res = app
        .revoke_as_public("app", &refresh_token_of(&tokens), Some("access_token"))
        .await;

    assert_eq!(res.status(), StatusCode::OK);
    oauth_error(
        app.refresh("app", &refresh_token_of(&tokens)).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_invalid_token(app.protected(&access_token_of(&tokens)).await).await;
}

#[tokio::test]
async fn an_opaque_access_token_is_revoked_with_basic_client_authentication() {
    let app = spawn_app().await;
    let secret = app
        .add_confidential_client("svc", "read", |c| {
            c.policy.access_format = AccessTokenFormat::Opaque;
        })
        .await;
    let access = access_token_of(&token_ok(app.client_credentials("svc", &secret).await).await);

    let res = app
        .post_form(
            REVOCATION_PATH,
            &[("token", &access)],
            Some(&basic_auth("svc", &secret)),
        )
        .await;

    assert_eq!(res.status(), StatusCode::OK);
    assert_invalid_token(app.protected(&access).await).await;
}

#[tokio::test]
async fn unknown_tokens_and_other_clients_tokens_get_200_and_stay_as_they_were() {
    let app = spawn_app().await;
    let tokens = app.session().await;
    app.add_public_client("intruder", "read", |_| {}).await;

    let unknown = app.revoke_as_public("app", "never-issued", None).await;
    let foreign = app
        .revoke_as_public("intruder", &access_token_of(&tokens), None)
        .await;

    assert_eq!(unknown.status(), StatusCode::OK);
    assert_eq!(foreign.status(), StatusCode::OK);
    assert_eq!(
        app.protected(&access_token_of(&tokens)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn revocation_refuses_bad_requests_in_rfc_6749_shape() {
    let app = spawn_app().await;
    let secret = app.add_confidential_client("svc", "read", |_| {}).await;

    let no_token = app
        .post_form(
            REVOCATION_PATH,
            &[("token_type_hint", "access_token")],
            Some(&basic_auth("svc", &secret)),
        )
        .await;
    let wrong_secret = app
        .post_form(
            REVOCATION_PATH,
            &[("token", "x")],
            Some(&basic_auth("svc", "wrong-secret")),
        )
        .await;
    let anonymous = app
        .post_form(REVOCATION_PATH, &[("token", "x")], None)
        .await;
    let json_body = app
        .send(
            Method::POST,
            REVOCATION_PATH,
            &[("Content-Type", "application/json")],
            Some(br#"{"token":"x"}"#.to_vec()),
        )
        .await;

    oauth_error(no_token, 400, "invalid_request").await;
    let challenge = wrong_secret
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    oauth_error(wrong_secret, 401, "invalid_client").await;
    assert!(challenge.is_some_and(|c| c.starts_with("Basic")));
    oauth_error(anonymous, 401, "invalid_client").await;
    oauth_error(json_body, 400, "invalid_request").await;
}

// ---- introspection (RFC 7662) ----

#[tokio::test]
async fn introspection_describes_an_active_jwt_and_refresh_token() {
    let app = spawn_app().await;
    app.add_resource_server().await;
    let tokens = app.session().await;

    let access = app.introspect(&access_token_of(&tokens)).await;
    let refresh = app.introspect(&refresh_token_of(&tokens)).await;

    assert_eq!(access["active"], true);
    assert_eq!(access["token_type"], "Bearer");
    assert_eq!(access["client_id"], "app");
    assert_eq!(access["scope"], "offline_access read");
    assert_eq!(access["iss"], app.issuer());
    assert!(
        access["sub"]
            .as_str()
            .is_some_and(|s| s.starts_with("usr_"))
    );
    assert!(access["aud"].is_string());
    let (iat, exp) = (
        access["iat"].as_i64().unwrap(),
        access["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, tokens["expires_in"].as_i64().unwrap());
    assert_eq!(refresh["active"], true);
    assert_eq!(refresh["token_type"], "refresh_token");
    assert_eq!(refresh["sub"], access["sub"]);
}

#[tokio::test]
async fn introspection_reports_revoked_redeemed_and_garbage_tokens_as_inactive() {
    let app = spawn_app().await;
    app.add_resource_server().await;
    let tokens = app.session().await;
    let (access, refresh) = (access_token_of(&tokens), refresh_token_of(&tokens));
    token_ok(app.refresh("app", &refresh).await).await;
    app.revoke_as_public("app", &access, None).await;

    for token in [access.as_str(), refresh.as_str(), "garbage", "a.b.c"] {
        assert_inactive(&app.introspect(token).await);
    }
    // RFC 6749 §3.1: an empty parameter is an omitted one.
    let empty = app
        .post_form(
            INTROSPECTION_PATH,
            &[("token", "")],
            Some(&basic_auth(RS, RS_SECRET)),
        )
        .await;
    oauth_error(empty, 400, "invalid_request").await;
}

#[tokio::test]
async fn introspection_needs_a_confidential_client() {
    let app = spawn_app().await;
    let tokens = app.session().await;
    let access = access_token_of(&tokens);

    let public = app
        .post_form(
            INTROSPECTION_PATH,
            &[("token", &access), ("client_id", "app")],
            None,
        )
        .await;
    let anonymous = app
        .post_form(INTROSPECTION_PATH, &[("token", &access)], None)
        .await;

    oauth_error(public, 401, "invalid_client").await;
    oauth_error(anonymous, 401, "invalid_client").await;
}

#[tokio::test]
async fn introspection_knows_every_dialect_s_tokens() {
    let app = spawn_demo_app().await;
    let auth = basic_auth(OAUTH2_SERVICE_CLIENT, OAUTH2_SERVICE_SECRET);
    let introspect = |token: String| {
        let app = &app;
        let auth = auth.clone();
        async move {
            let res = app
                .post_form(INTROSPECTION_PATH, &[("token", &token)], Some(&auth))
                .await;
            json_body(res, StatusCode::OK).await
        }
    };

    // Seed 004: JWT access token, opaque refresh token.
    let seed004 = token_ok(
        app.password_grant(OAUTH2_PUBLIC_CLIENT, OAUTH2_USERNAME, OAUTH2_PASSWORD, None)
            .await,
    )
    .await;
    // Seed 000: `ACCOUNT||KEYID||…` access and refresh tokens.
    let seed000 = json_body(
        app.post_json_raw(
            "/oapi/auth/gen-secret-key/derivative",
            &[],
            r#"{"username": "022C099995", "password": "123456aA@"}"#,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    // Seed 001: 40 hex characters.
    let seed001 = json_body(
        app.send(
            Method::POST,
            "/v1/token",
            &[(
                "Authorization",
                &plain_basic(BANKHUB_CLIENT, BANKHUB_SECRET),
            )],
            None,
        )
        .await,
        StatusCode::CREATED,
    )
    .await;

    let cases = [
        (
            str_of(&seed004, "access_token"),
            "Bearer",
            OAUTH2_PUBLIC_CLIENT,
        ),
        (
            str_of(&seed004, "refresh_token"),
            "refresh_token",
            OAUTH2_PUBLIC_CLIENT,
        ),
        (
            str_of(&seed000, "access_token"),
            "Bearer",
            "oapi-derivative",
        ),
        (
            str_of(&seed000, "refresh_token"),
            "refresh_token",
            "oapi-derivative",
        ),
        (str_of(&seed001, "access_token"), "Bearer", BANKHUB_CLIENT),
    ];
    for (token, token_type, client_id) in cases {
        let body = introspect(token.to_owned()).await;
        assert_eq!(body["active"], true, "{token:.20}…: {body}");
        assert_eq!(body["token_type"], token_type, "{body}");
        assert_eq!(body["client_id"], client_id, "{body}");
        assert!(body["exp"].as_i64() > body["iat"].as_i64(), "{body}");
    }
}

// ---- discovery (RFC 8414, OpenID Connect Discovery) ----

#[tokio::test]
async fn discovery_lists_the_enabled_endpoints_grants_and_methods() {
    let app = spawn_app().await;

    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let res = app.send(Method::GET, path, &[], None).await;
        let doc = json_body(res, StatusCode::OK).await;
        let issuer = app.issuer();
        assert_eq!(doc["issuer"], issuer, "{path}");
        assert_eq!(doc["token_endpoint"], format!("{issuer}/connect/token"));
        assert_eq!(
            doc["revocation_endpoint"],
            format!("{issuer}{REVOCATION_PATH}")
        );
        assert_eq!(
            doc["introspection_endpoint"],
            format!("{issuer}{INTROSPECTION_PATH}")
        );
        assert_eq!(doc["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));
        assert_eq!(
            doc["authorization_endpoint"],
            format!("{issuer}/connect/authorize")
        );
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        let grants = doc["grant_types_supported"].as_array().unwrap();
        for g in [
            "password",
            "client_credentials",
            "refresh_token",
            "authorization_code",
        ] {
            assert!(grants.iter().any(|v| v == g), "{g} in {doc}");
        }
        assert!(
            doc["introspection_endpoint_auth_methods_supported"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m != "none"),
            "introspection is for confidential clients: {doc}"
        );
        if path.ends_with("openid-configuration") {
            assert_eq!(
                doc["subject_types_supported"],
                serde_json::json!(["public"])
            );
            assert_eq!(
                doc["id_token_signing_alg_values_supported"],
                serde_json::json!(["EdDSA"])
            );
            assert_eq!(
                doc["userinfo_endpoint"],
                format!("{issuer}/connect/userinfo")
            );
        }
        // Every advertised endpoint answers (a POST without credentials: 400/401, not 404).
        for field in [
            "token_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
        ] {
            let url = doc[field].as_str().unwrap();
            let path = url.strip_prefix(&issuer).unwrap();
            let res = app.post_form(path, &[], None).await;
            assert!(
                matches!(res.status().as_u16(), 400 | 401),
                "{field}: {}",
                res.status()
            );
        }
    }
}

#[tokio::test]
async fn discovery_omits_the_oauth2_endpoints_when_that_dialect_is_off() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.dialects.disable("oauth2");
    })
    .await;

    let res = app
        .send(
            Method::GET,
            "/.well-known/oauth-authorization-server",
            &[],
            None,
        )
        .await;

    let doc = json_body(res, StatusCode::OK).await;
    for field in [
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
    ] {
        assert!(doc.get(field).is_none(), "{field} in {doc}");
    }
    assert_eq!(doc["grant_types_supported"], serde_json::json!([]));
    assert_eq!(
        app.post_form(REVOCATION_PATH, &[("token", "x")], None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

// ---- the JWT revocation list, for resource servers that verify offline ----

#[tokio::test]
async fn the_revocation_list_names_revoked_jwts_to_confidential_clients_only() {
    let app = spawn_app().await;
    app.add_resource_server().await;
    let tokens = app.session().await;
    let access = access_token_of(&tokens);
    let jti = crate::helpers::jwt_claims(&access)["jti"].clone();
    let list = |auth: Option<String>, since: &str| {
        let app = &app;
        let path = format!("/connect/revoked-jwts?since={since}");
        async move {
            let headers: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| ("Authorization", a))
                .into_iter()
                .collect();
            app.send(Method::GET, &path, &headers, None).await
        }
    };
    let rs = Some(basic_auth(RS, RS_SECRET));
    let before = json_body(list(rs.clone(), "0").await, StatusCode::OK).await;

    app.revoke_as_public("app", &access, None).await;

    let after = json_body(list(rs.clone(), "0").await, StatusCode::OK).await;
    let until = after["until"].as_i64().unwrap();
    let later = json_body(
        list(rs.clone(), &(until + 60).to_string()).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(before["revoked"], serde_json::json!([]));
    assert_eq!(after["revoked"][0]["jti"], jti);
    assert_eq!(
        after["revoked"][0]["exp"],
        crate::helpers::jwt_claims(&access)["exp"]
    );
    assert_eq!(later["revoked"], serde_json::json!([]));
    oauth_error(list(None, "0").await, 401, "invalid_client").await;
    oauth_error(list(rs, "yesterday").await, 400, "invalid_request").await;
}
