//! The authorization code grant with PKCE against the real server: `/connect/authorize` (the
//! login page, its CSRF cookie, the redirect back), `/connect/token` and `/connect/userinfo`,
//! one RFC 6749 / RFC 7636 / RFC 9700 / OpenID Connect rule per test. The browser drive of the
//! same flow is in `authcode_browser`.

use reqwest::header::{
    ACCEPT_LANGUAGE, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE,
};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use std::collections::HashMap;

use crate::helpers::*;

pub const AUTHORIZE_PATH: &str = "/connect/authorize";
pub const USERINFO_PATH: &str = "/connect/userinfo";
pub const REDIRECT: &str = "http://127.0.0.1:9/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const PASSWORD: &str = "correct horse battery";

pub fn challenge(verifier: &str) -> String {
    khoa_core::grant::authorization_code::s256_challenge(verifier)
}

/// A public web client of the code flow (and refresh), redirecting to [`REDIRECT`].
pub async fn add_web_client(app: &TestApp, id: &str) {
    app.add_public_client(id, "openid offline_access read", |c| {
        c.grant_types = vec![
            khoa_core::model::GrantType::AuthorizationCode,
            khoa_core::model::GrantType::RefreshToken,
        ];
        c.redirect_uris = vec![REDIRECT.to_owned()];
        c.default_scopes = khoa_core::scope::ScopeSet::parse("read").unwrap();
    })
    .await;
}

async fn setup() -> TestApp {
    let app = spawn_app().await;
    add_web_client(&app, "web").await;
    add_web_client(&app, "other").await;
    app.add_user("alice", PASSWORD, None).await;
    app
}

/// The query of a standard authorization request; `tweak` edits it.
fn params(client_id: &str, tweak: impl FnOnce(&mut Vec<(&'static str, String)>)) -> String {
    let mut p: Vec<(&'static str, String)> = vec![
        ("response_type", "code".into()),
        ("client_id", client_id.into()),
        ("redirect_uri", REDIRECT.into()),
        ("scope", "openid read".into()),
        ("state", "af0ifjsldkj".into()),
        ("code_challenge", challenge(VERIFIER)),
        ("code_challenge_method", "S256".into()),
        ("nonce", "n-0S6_WzA2Mj".into()),
    ];
    tweak(&mut p);
    let pairs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
    form_body(&pairs)
}

/// The login page as a browser gets it: its hidden fields, and the CSRF cookie it set.
struct LoginPage {
    status: StatusCode,
    fields: HashMap<String, String>,
    cookie: Option<String>,
    html: String,
    headers: reqwest::header::HeaderMap,
}

async fn get_authorize(app: &TestApp, query: &str) -> Response {
    app.client
        .get(format!("{}?{query}", app.url(AUTHORIZE_PATH)))
        .send()
        .await
        .expect("the authorize request completes")
}

async fn login_page(app: &TestApp, query: &str) -> LoginPage {
    page_of(get_authorize(app, query).await).await
}

async fn page_of(res: Response) -> LoginPage {
    let status = res.status();
    let headers = res.headers().clone();
    let cookie = headers
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let html = res.text().await.unwrap();
    LoginPage {
        status,
        fields: hidden_fields(&html),
        cookie,
        html,
        headers,
    }
}

/// `<input type="hidden" name="N" value="V">` pairs, unescaped.
fn hidden_fields(html: &str) -> HashMap<String, String> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.strip_prefix("name=\"")?.split('"').next()?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            let value = value
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&");
            Some((name.to_owned(), value))
        })
        .collect()
}

async fn post_login(
    app: &TestApp,
    fields: &HashMap<String, String>,
    cookie: Option<&str>,
    username: &str,
    password: &str,
) -> Response {
    let mut form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    form.push(("username", username));
    form.push(("password", password));
    let mut req = app
        .client
        .post(app.url(AUTHORIZE_PATH))
        .header(CONTENT_TYPE, FORM_CONTENT_TYPE)
        .body(form_body(&form));
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    req.send().await.expect("the login request completes")
}

/// The query parameters of a redirect's `Location`, which must point at [`REDIRECT`].
fn redirect_params(res: &Response) -> HashMap<String, String> {
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "a 303 back to the client"
    );
    let location = res.headers()[LOCATION].to_str().unwrap();
    let (base, query) = location.split_once('?').expect("a query");
    assert_eq!(base, REDIRECT);
    url_params(query)
}

fn url_params(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .unwrap();
            (k.to_owned(), v.into_owned())
        })
        .collect()
}

/// Signs `alice` in for `client_id` with `query` and returns the code.
async fn code_for(app: &TestApp, client_id: &str, query: &str) -> String {
    let page = login_page(app, query).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let res = post_login(app, &page.fields, page.cookie.as_deref(), "alice", PASSWORD).await;
    let back = redirect_params(&res);
    assert_eq!(back["iss"], app.issuer(), "RFC 9207 iss");
    let _ = client_id;
    back["code"].clone()
}

async fn exchange(
    app: &TestApp,
    client_id: &str,
    code: &str,
    redirect: &str,
    verifier: &str,
) -> Response {
    app.token(&[
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", code),
        ("redirect_uri", redirect),
        ("code_verifier", verifier),
    ])
    .await
}

async fn userinfo(app: &TestApp, bearer: &str) -> Response {
    app.client
        .get(app.url(USERINFO_PATH))
        .header("Authorization", format!("Bearer {bearer}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_code_and_its_verifier_get_tokens_that_the_resource_accepts() {
    let app = setup().await;
    let code = code_for(
        &app,
        "web",
        &params("web", |p| p[3].1 = "offline_access read".into()),
    )
    .await;

    let body = token_ok(exchange(&app, "web", &code, REDIRECT, VERIFIER).await).await;

    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "offline_access read");
    assert!(body.get("id_token").is_none(), "no openid, no ID token");
    let access = access_token_of(&body);
    assert_eq!(app.protected(&access).await.status(), StatusCode::OK);
    // The refresh token rotates like any other.
    let refreshed = token_ok(app.refresh("web", &refresh_token_of(&body)).await).await;
    assert!(refreshed["access_token"].is_string());
}

#[tokio::test]
async fn the_state_comes_back_unchanged() {
    let app = setup().await;
    let odd_state = "a b&c=d/é%";
    let query = params("web", |p| p[4].1 = odd_state.into());
    let page = login_page(&app, &query).await;
    let res = post_login(
        &app,
        &page.fields,
        page.cookie.as_deref(),
        "alice",
        PASSWORD,
    )
    .await;
    assert_eq!(redirect_params(&res)["state"], odd_state);
}

#[tokio::test]
async fn a_wrong_verifier_is_invalid_grant() {
    let app = setup().await;
    let code = code_for(&app, "web", &params("web", |_| {})).await;
    let wrong = "W".repeat(43);
    oauth_error(
        exchange(&app, "web", &code, REDIRECT, &wrong).await,
        400,
        "invalid_grant",
    )
    .await;
    let malformed = "short";
    oauth_error(
        exchange(&app, "web", &code, REDIRECT, malformed).await,
        400,
        "invalid_grant",
    )
    .await;
    // Neither consumed the code.
    token_ok(exchange(&app, "web", &code, REDIRECT, VERIFIER).await).await;
}

#[tokio::test]
async fn missing_or_plain_pkce_is_refused_back_at_the_client() {
    let app = setup().await;
    let plain = params("web", |p| {
        p[5].1 = VERIFIER.into();
        p[6].1 = "plain".into();
    });
    let missing = params("web", |p| {
        p.remove(6);
        p.remove(5);
    });
    for query in [plain, missing] {
        let res = get_authorize(&app, &query).await;
        let back = redirect_params(&res);
        assert_eq!(back["error"], "invalid_request");
        assert_eq!(back["state"], "af0ifjsldkj");
        assert!(back.contains_key("error_description"));
    }
}

#[tokio::test]
async fn an_unregistered_redirect_uri_or_unknown_client_gets_an_error_page_not_a_redirect() {
    let app = setup().await;
    let evil = params("web", |p| p[2].1 = "https://evil.example/cb".into());
    let prefix = params("web", |p| p[2].1 = format!("{REDIRECT}/more"));
    let unknown = params("nobody", |_| {});
    for query in [evil, prefix, unknown] {
        let res = get_authorize(&app, &query).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(res.headers().get(LOCATION).is_none(), "never redirected");
        let html = res.text().await.unwrap();
        assert!(html.contains("<html lang="), "{html}");
        assert!(
            !html.contains("evil.example"),
            "the page does not link there"
        );
    }
}

#[tokio::test]
async fn a_redirect_uri_differing_at_the_token_endpoint_is_invalid_grant() {
    let app = setup().await;
    let code = code_for(&app, "web", &params("web", |_| {})).await;
    let other = format!("{REDIRECT}?x=1");
    oauth_error(
        exchange(&app, "web", &code, &other, VERIFIER).await,
        400,
        "invalid_grant",
    )
    .await;
    let missing = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", "web"),
            ("code", &code),
            ("code_verifier", VERIFIER),
        ])
        .await;
    oauth_error(missing, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_reused_code_is_refused_and_revokes_the_tokens_it_issued() {
    let app = setup().await;
    let code = code_for(&app, "web", &params("web", |_| {})).await;
    let first = token_ok(exchange(&app, "web", &code, REDIRECT, VERIFIER).await).await;
    let access = access_token_of(&first);
    assert_eq!(app.protected(&access).await.status(), StatusCode::OK);

    let again = exchange(&app, "web", &code, REDIRECT, VERIFIER).await;

    oauth_error(again, 400, "invalid_grant").await;
    assert_invalid_token(app.protected(&access).await).await;
}

#[tokio::test]
async fn an_expired_code_is_invalid_grant() {
    let app = spawn_app_with(|c| c.authorize.code_ttl_secs = 1).await;
    add_web_client(&app, "web").await;
    app.add_user("alice", PASSWORD, None).await;
    let code = code_for(&app, "web", &params("web", |_| {})).await;

    // The engine's clock is the system clock here: the code must outlive its one second.
    app.advance(3);

    oauth_error(
        exchange(&app, "web", &code, REDIRECT, VERIFIER).await,
        400,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn a_code_of_one_client_cannot_be_redeemed_by_another() {
    let app = setup().await;
    let code = code_for(&app, "web", &params("web", |_| {})).await;
    oauth_error(
        exchange(&app, "other", &code, REDIRECT, VERIFIER).await,
        400,
        "invalid_grant",
    )
    .await;
    // It stays good for its own client.
    token_ok(exchange(&app, "web", &code, REDIRECT, VERIFIER).await).await;
}

#[tokio::test]
async fn a_login_without_or_with_a_mismatched_csrf_token_is_refused() {
    let app = setup().await;
    let page = login_page(&app, &params("web", |_| {})).await;
    let other = login_page(&app, &params("web", |_| {})).await;

    let no_cookie = post_login(&app, &page.fields, None, "alice", PASSWORD).await;
    let mut no_token = page.fields.clone();
    no_token.remove("csrf_token");
    let no_token = post_login(&app, &no_token, page.cookie.as_deref(), "alice", PASSWORD).await;
    // A token from one cookie with another browser's cookie.
    let swapped = post_login(
        &app,
        &page.fields,
        other.cookie.as_deref(),
        "alice",
        PASSWORD,
    )
    .await;

    for res in [no_cookie, no_token, swapped] {
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(res.headers().get(LOCATION).is_none());
    }
}

#[tokio::test]
async fn the_login_page_is_accessible_uncached_unframeable_and_sets_a_strict_cookie() {
    let app = setup().await;
    let page = login_page(&app, &params("web", |_| {})).await;
    let set_cookie = page.headers[SET_COOKIE].to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/connect/authorize"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    assert_eq!(page.headers["cache-control"], "no-store");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        page.html.contains("<html lang=\"vi\">"),
        "Vietnamese by default"
    );
    assert!(
        page.html
            .contains("<label for=\"username\">Tên đăng nhập</label>")
    );
    assert!(
        page.html
            .contains("<label for=\"password\">Mật khẩu</label>")
    );
    assert!(page.html.contains("id=\"username\"") && page.html.contains("id=\"password\""));
    assert!(!page.html.contains("<script"), "no JavaScript");
    for field in [
        "client_id",
        "redirect_uri",
        "state",
        "code_challenge",
        "csrf_token",
    ] {
        assert!(page.fields.contains_key(field), "hidden {field}");
    }

    let english = app
        .client
        .get(format!(
            "{}?{}",
            app.url(AUTHORIZE_PATH),
            params("web", |_| {})
        ))
        .header(ACCEPT_LANGUAGE, "en-US,en;q=0.9,vi;q=0.5")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(english.contains("<html lang=\"en\">"));
    assert!(english.contains("<label for=\"password\">Password</label>"));
    let by_ui_locales = login_page(
        &app,
        &params("web", |p| p.push(("ui_locales", "en".into()))),
    )
    .await;
    assert!(by_ui_locales.html.contains("<html lang=\"en\">"));
}

#[tokio::test]
async fn wrong_credentials_show_the_form_again_without_saying_which_part_was_wrong() {
    let app = setup().await;
    let page = login_page(&app, &params("web", |_| {})).await;
    let wrong_password =
        post_login(&app, &page.fields, page.cookie.as_deref(), "alice", "nope").await;
    let unknown_user =
        post_login(&app, &page.fields, page.cookie.as_deref(), "bob", PASSWORD).await;

    let a = page_of(wrong_password).await;
    let b = page_of(unknown_user).await;
    for p in [&a, &b] {
        assert_eq!(p.status, StatusCode::OK);
        assert!(p.html.contains("role=\"alert\""), "{}", p.html);
        assert!(p.html.contains("Tên đăng nhập hoặc mật khẩu không đúng."));
    }
    // Same message; only the echoed username differs.
    assert_eq!(a.html.replace("alice", "bob"), b.html);
    // The form still works afterwards.
    let res = post_login(&app, &a.fields, page.cookie.as_deref(), "alice", PASSWORD).await;
    assert!(redirect_params(&res).contains_key("code"));
}

#[tokio::test]
async fn a_locked_account_is_told_so_on_the_form_with_retry_after_even_with_the_right_password() {
    let app = setup().await;
    let page = login_page(&app, &params("web", |_| {})).await;
    for _ in 0..5 {
        post_login(&app, &page.fields, page.cookie.as_deref(), "alice", "nope").await;
    }

    let res = post_login(
        &app,
        &page.fields,
        page.cookie.as_deref(),
        "alice",
        PASSWORD,
    )
    .await;

    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    let locked = page_of(res).await;
    assert_eq!(locked.status, StatusCode::OK);
    assert!(matches!(retry_after, Some(1..=60)), "{retry_after:?}");
    assert!(
        locked.html.contains("tài khoản tạm thời bị khóa"),
        "{}",
        locked.html
    );
    assert!(
        !locked
            .html
            .contains("Tên đăng nhập hoặc mật khẩu không đúng.")
    );
    assert!(
        locked.fields.contains_key("code_challenge"),
        "the form is shown again"
    );
}

#[tokio::test]
async fn openid_adds_an_id_token_with_the_nonce_and_opens_userinfo() {
    let app = setup().await;
    let code = code_for(&app, "web", &params("web", |_| {})).await;
    let body = token_ok(exchange(&app, "web", &code, REDIRECT, VERIFIER).await).await;

    let id_token = body["id_token"].as_str().expect("an id_token");
    assert_eq!(jwt_header(id_token)["typ"], "JWT");
    let claims = jwt_claims(id_token);
    assert_eq!(claims["iss"], app.issuer());
    assert_eq!(claims["aud"], "web");
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert!(claims["sub"].as_str().unwrap().starts_with("usr_") || claims["sub"].is_string());
    let (iat, exp, auth_time) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
        claims["auth_time"].as_i64().unwrap(),
    );
    assert!(auth_time <= iat && iat < exp);
    // The ID token is signed by a published key and is no access token.
    let kid = jwt_header(id_token)["kid"].as_str().unwrap().to_owned();
    assert!(app.jwks_kids().await.contains(&kid));
    assert_invalid_token(app.protected(id_token).await).await;

    let res = userinfo(&app, &access_token_of(&body)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["sub"], claims["sub"]);
    assert_eq!(info["preferred_username"], "alice");
}

#[tokio::test]
async fn userinfo_needs_the_openid_scope_and_a_valid_token() {
    let app = setup().await;
    let code = code_for(&app, "web", &params("web", |p| p[3].1 = "read".into())).await;
    let body = token_ok(exchange(&app, "web", &code, REDIRECT, VERIFIER).await).await;

    let res = userinfo(&app, &access_token_of(&body)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let challenge = res.headers()[WWW_AUTHENTICATE].to_str().unwrap().to_owned();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");

    assert_invalid_token(userinfo(&app, "not-a-token").await).await;
    let none = app
        .client
        .post(app.url(USERINFO_PATH))
        .send()
        .await
        .unwrap();
    assert_invalid_token(none).await;
}

#[tokio::test]
async fn the_demo_authorize_url_signs_the_document_user_in_with_openid() {
    use khoa_server::demo;
    let app = spawn_demo_app().await;
    let url = demo::authorize_url(&app.address);

    let page = page_of(app.client.get(&url).send().await.unwrap()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let res = post_login(
        &app,
        &page.fields,
        page.cookie.as_deref(),
        demo::OAUTH2_USERNAME,
        demo::OAUTH2_PASSWORD,
    )
    .await;
    let location = res.headers()[LOCATION].to_str().unwrap().to_owned();
    let (base, query) = location.split_once('?').unwrap();
    assert_eq!(base, demo::OAUTH2_WEB_REDIRECT_URI);
    let code = url_params(query)["code"].clone();

    let body = exchange(
        &app,
        demo::OAUTH2_WEB_CLIENT,
        &code,
        demo::OAUTH2_WEB_REDIRECT_URI,
        demo::PKCE_VERIFIER,
    )
    .await;
    let body = token_ok(body).await;
    assert_eq!(body["scope"], demo::OAUTH2_WEB_SCOPES);
    assert!(body["id_token"].is_string() && body["refresh_token"].is_string());
}
