//! `/connect/authorize`: the authorization endpoint of the code flow (RFC 6749 §4.1, PKCE per
//! RFC 7636, the rules of RFC 9700 §2.1.1) with a server-rendered login page.
//!
//! `GET` checks the request and shows the form; `POST` checks the CSRF token, the request
//! (again: the form's hidden fields are client input like any other) and the credentials, then
//! sends the browser back to the client with `303 See Other` (RFC 9700 §4.12: never 307, which
//! would replay the password to the client).
//!
//! The page is a maud template, which escapes every interpolated value: no JavaScript, labels
//! bound to their inputs, the `lang` attribute set, Vietnamese or English by
//! `ui_locales` (OpenID Connect Core §3.1.2.1) or `Accept-Language`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use khoa_core::authorize::{AuthorizeError, AuthorizeRequest, ValidAuthorize};
use khoa_core::error::{EngineError, OAuthError};
use maud::{DOCTYPE, Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::SecretString;
use std::collections::HashMap;

use crate::error::ApiError;
use crate::limits::{ClientIp, Limited};
use crate::state::AppState;
use crate::wire::{content_type_is, parse_form};

pub const AUTHORIZE_PATH: &str = "/connect/authorize";
const CSRF_COOKIE: &str = "khoa_csrf";
const FORM: &str = "application/x-www-form-urlencoded";

/// The authorization request's parameters the form carries from GET to POST, in page order.
const CARRIED: [&str; 9] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "ui_locales",
];

pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parse_form(query.unwrap_or_default().as_bytes());
    let lang = Lang::choose(params.as_ref().ok(), &headers);
    let Ok(params) = params else {
        return error_page(lang, StatusCode::BAD_REQUEST, lang.t().malformed);
    };
    match state
        .engine
        .authorization()
        .validate_authorize(&request_of(&params))
        .await
    {
        Err(e) => ApiError::from(e).into_response(),
        Ok(Err(refusal)) => refuse(&state, refusal, lang),
        Ok(Ok(valid)) => login_page(&state, &headers, &params, &valid, lang, None),
    }
}

pub async fn submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let form = read_form(&headers, body);
    let lang = Lang::choose(form.as_ref().ok(), &headers);
    if let Err(l) = state.limits.check_ip(ip) {
        return too_many(lang, l);
    }
    let Ok(mut form) = form else {
        return error_page(lang, StatusCode::BAD_REQUEST, lang.t().malformed);
    };
    let client_id = form.get("client_id").map(String::as_str);
    if let Err(l) = state.limits.check_client(client_id) {
        return too_many(lang, l);
    }
    if !csrf_ok(&state, &headers, &form) {
        return error_page(lang, StatusCode::FORBIDDEN, lang.t().csrf);
    }
    match state
        .engine
        .authorization()
        .validate_authorize(&request_of(&form))
        .await
    {
        Err(e) => ApiError::from(e).into_response(),
        Ok(Err(refusal)) => refuse(&state, refusal, lang),
        Ok(Ok(valid)) => sign_in(&state, &headers, &mut form, &valid, lang).await,
    }
}

/// The credential check and its two endings: the code back to the client, or the form again
/// with one message that does not say which field was wrong.
async fn sign_in(
    state: &AppState,
    headers: &HeaderMap,
    form: &mut HashMap<String, String>,
    valid: &ValidAuthorize,
    lang: Lang,
) -> Response {
    let username = form.remove("username").unwrap_or_default();
    let password = SecretString::from(form.remove("password").unwrap_or_default());
    let client = Some(valid.client.client_id.as_str());
    let user = match state
        .engine
        .authorization()
        .sign_in_for(client, &username, &password)
        .await
    {
        Ok(Some(user)) => user,
        Ok(None) => {
            form.insert("username".into(), username);
            let message = Some(lang.t().bad_credentials);
            return login_page(state, headers, form, valid, lang, message);
        }
        // Locked after repeated failures: the form says so, with `Retry-After` as the other
        // dialects answer.
        Err(EngineError::OAuth(e)) if let Some(secs) = e.retry_after() => {
            form.insert("username".into(), username);
            let message = Some(lang.t().locked);
            let mut res = login_page(state, headers, form, valid, lang, message);
            crate::dialects::set_retry_after(&mut res, secs);
            return res;
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    match state.engine.authorization().issue_code(valid, &user).await {
        Ok(issued) => {
            tracing::info!(client_id = %valid.client.client_id, "authorization code issued");
            let mut params = vec![("code", issued.code.as_str())];
            params.extend(issued.state.as_deref().map(|s| ("state", s)));
            redirect(state, &issued.redirect_uri, params)
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn request_of(p: &HashMap<String, String>) -> AuthorizeRequest {
    let get = |k: &str| p.get(k).cloned();
    AuthorizeRequest {
        response_type: get("response_type"),
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        scope: get("scope"),
        state: get("state"),
        code_challenge: get("code_challenge"),
        code_challenge_method: get("code_challenge_method"),
        nonce: get("nonce"),
    }
}

fn read_form(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<HashMap<String, String>, ()> {
    let body = body.map_err(drop)?;
    if !content_type_is(
        headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        FORM,
    ) {
        return Err(());
    }
    parse_form(&body).map_err(drop)
}

// ---- CSRF: a signed double-submit cookie (khoa_core::authorize::CsrfGuard) ----

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn csrf_ok(state: &AppState, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    let token = form.get("csrf_token").map(String::as_str);
    state
        .engine
        .authorization()
        .csrf()
        .verify(cookie(headers, CSRF_COOKIE), token)
}

/// The cookie to pair the form with: the browser's own when it has a well-formed one (so that
/// several tabs keep working), else a fresh one to set.
fn csrf_cookie(state: &AppState, headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, CSRF_COOKIE) {
        Some(c)
            if c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            (c.to_owned(), false)
        }
        _ => (state.engine.authorization().new_csrf_cookie(), true),
    }
}

// ---- answers ----

/// RFC 6749 §4.1.2.1: an unverifiable client or redirect URI is shown to the user; anything
/// else goes back to the client with `error` and the `state` it sent.
fn refuse(state: &AppState, refusal: AuthorizeError, lang: Lang) -> Response {
    match refusal {
        AuthorizeError::Page(e) => {
            tracing::debug!(error = %e, "authorization request refused on the page");
            let message = format!("{} ({})", lang.t().bad_client, e.description);
            error_page(lang, StatusCode::BAD_REQUEST, &message)
        }
        AuthorizeError::Redirect {
            redirect_uri,
            state: client_state,
            error,
        } => {
            let mut params = error_params(&error);
            params.extend(client_state.as_deref().map(|s| ("state", s)));
            redirect(state, &redirect_uri, params)
        }
    }
}

fn error_params(e: &OAuthError) -> Vec<(&'static str, &str)> {
    vec![
        ("error", e.code.as_str()),
        ("error_description", e.description.as_ref()),
    ]
}

/// `303` to `redirect_uri` with `params` added to its query (RFC 6749 §3.1.2: an existing
/// query is kept) and `iss` (RFC 9207: tells the client which server answered, against mix-up).
fn redirect(state: &AppState, redirect_uri: &str, params: Vec<(&str, &str)>) -> Response {
    let issuer = ("iss", state.engine.config().issuer.as_str());
    let query = params
        .iter()
        .chain([&issuer])
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY_VALUE)))
        .collect::<Vec<_>>()
        .join("&");
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{sep}{query}");
    let mut res = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            res.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => return error_page(Lang::En, StatusCode::BAD_REQUEST, "invalid redirect_uri"),
    }
    secure_headers(res)
}

/// What a query value may keep unescaped: the RFC 3986 unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Headers of every answer of this endpoint: nothing cached (the page carries a CSRF token and
/// the redirect a code), no framing (clickjacking, RFC 6749 §10.13), no referrer leak.
fn secure_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        // No `form-action`: browsers apply it to the redirect that follows the POST, and the
        // client's redirect URI is on another origin.
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    res
}

fn html(status: StatusCode, body: String) -> Response {
    let res = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    secure_headers(res)
}

/// 429 (RFC 6585 §4) as the page's own error page, with `Retry-After`.
fn too_many(lang: Lang, l: Limited) -> Response {
    let mut res = error_page(lang, StatusCode::TOO_MANY_REQUESTS, lang.t().too_many);
    crate::dialects::set_retry_after(&mut res, l.retry_after_secs);
    res
}

fn error_page(lang: Lang, status: StatusCode, message: &str) -> Response {
    let t = lang.t();
    let body = page(
        lang,
        t.error_title,
        html! {
            h1 { (t.error_title) }
            p role="alert" { (message) }
        },
    );
    html(status, body.into_string())
}

/// The login form. A failed attempt shows `message` and answers 200, not 401: a 401 must carry
/// a `WWW-Authenticate` challenge (RFC 9110 §15.5.2), and this page is not HTTP authentication.
fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    valid: &ValidAuthorize,
    lang: Lang,
    message: Option<&str>,
) -> Response {
    let (cookie_value, set_cookie) = csrf_cookie(state, headers);
    let token = state
        .engine
        .authorization()
        .csrf()
        .form_token(&cookie_value);
    let form = LoginForm {
        params,
        client_name: &valid.client.name,
        scope: &valid.scope.to_string(),
        message,
        csrf_token: &token,
    };
    let mut res = html(StatusCode::OK, form.render(lang).into_string());
    if set_cookie {
        let secure = if state.engine.config().issuer.starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        let value = format!(
            "{CSRF_COOKIE}={cookie_value}; HttpOnly; SameSite=Lax; Path={AUTHORIZE_PATH}{secure}"
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    res
}

/// What the login page shows: every value here may come from the request or the client's
/// registration, and the template escapes each one.
struct LoginForm<'a> {
    /// The request's parameters: the [`CARRIED`] ones become hidden fields, `username` is
    /// echoed after a failed attempt.
    params: &'a HashMap<String, String>,
    client_name: &'a str,
    scope: &'a str,
    message: Option<&'a str>,
    csrf_token: &'a str,
}

impl LoginForm<'_> {
    fn render(&self, lang: Lang) -> Markup {
        let t = lang.t();
        let invalid = self.message.is_some();
        let username = self.params.get("username").map_or("", String::as_str);
        let carried = CARRIED
            .iter()
            .filter_map(|name| Some((*name, self.params.get(*name)?)));
        page(
            lang,
            t.title,
            html! {
                h1 { (t.title) }
                p { (t.intro.replace("{client}", self.client_name)) }
                p { (t.scopes) " " strong { (self.scope) } }
                @if let Some(m) = self.message {
                    p id="login-error" role="alert" { (m) }
                }
                form method="post" action=(AUTHORIZE_PATH) {
                    @for (name, value) in carried {
                        input type="hidden" name=(name) value=(value);
                    }
                    input type="hidden" name="csrf_token" value=(self.csrf_token);
                    p {
                        label for="username" { (t.username) }
                        br;
                        input id="username" name="username" type="text" autocomplete="username"
                            required value=(username)
                            aria-invalid=[invalid.then_some("true")]
                            aria-describedby=[invalid.then_some("login-error")];
                    }
                    p {
                        label for="password" { (t.password) }
                        br;
                        input id="password" name="password" type="password"
                            autocomplete="current-password" required
                            aria-invalid=[invalid.then_some("true")]
                            aria-describedby=[invalid.then_some("login-error")];
                    }
                    p { button type="submit" { (t.submit) } }
                }
            },
        )
    }
}

/// The document around every page of this endpoint; `content` goes in `<main>`.
fn page(lang: Lang, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style {
                    "body{font-family:sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}"
                    "input{width:100%;padding:.5rem;font-size:1rem}"
                    "button{padding:.5rem 1.5rem;font-size:1rem}"
                    "[role=alert]{color:#a00}"
                }
            }
            body { main { (content) } }
        }
    }
}

// ---- languages ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Vi,
    En,
}

struct Texts {
    title: &'static str,
    intro: &'static str,
    scopes: &'static str,
    username: &'static str,
    password: &'static str,
    submit: &'static str,
    bad_credentials: &'static str,
    locked: &'static str,
    error_title: &'static str,
    bad_client: &'static str,
    csrf: &'static str,
    malformed: &'static str,
    too_many: &'static str,
}

impl Lang {
    /// `ui_locales` first (the client's choice for its user), then `Accept-Language` by
    /// quality; Vietnamese when neither names a language the page speaks.
    pub fn choose(params: Option<&HashMap<String, String>>, headers: &HeaderMap) -> Lang {
        let from_tag = |tag: &str| match tag.split(['-', '_']).next().map(str::to_ascii_lowercase) {
            Some(p) if p == "vi" => Some(Lang::Vi),
            Some(p) if p == "en" => Some(Lang::En),
            _ => None,
        };
        if let Some(lang) = params
            .and_then(|p| p.get("ui_locales"))
            .and_then(|l| l.split(' ').find_map(from_tag))
        {
            return lang;
        }
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut ranked: Vec<(f32, Lang)> = accept
            .split(',')
            .filter_map(|item| {
                let mut parts = item.split(';');
                let lang = from_tag(parts.next()?.trim())?;
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                (q > 0.0).then_some((q, lang))
            })
            .collect();
        // Stable: among equal qualities the header's order decides.
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranked.first().map_or(Lang::Vi, |(_, l)| *l)
    }

    fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }

    fn t(self) -> Texts {
        let s = |vi: &'static str, en: &'static str| match self {
            Lang::Vi => vi,
            Lang::En => en,
        };
        Texts {
            title: s("Đăng nhập", "Sign in"),
            intro: s(
                "{client} yêu cầu truy cập tài khoản của bạn.",
                "{client} asks to access your account.",
            ),
            scopes: s("Quyền được yêu cầu:", "Permissions requested:"),
            username: s("Tên đăng nhập", "Username"),
            password: s("Mật khẩu", "Password"),
            submit: s("Đăng nhập", "Sign in"),
            bad_credentials: s(
                "Tên đăng nhập hoặc mật khẩu không đúng.",
                "The username or password is incorrect.",
            ),
            locked: s(
                "Đăng nhập sai quá nhiều lần: tài khoản tạm thời bị khóa. Vui lòng thử lại sau.",
                "Too many failed sign-ins: the account is temporarily locked. Try again later.",
            ),
            error_title: s("Không thể đăng nhập", "Cannot sign in"),
            bad_client: s(
                "Ứng dụng hoặc địa chỉ chuyển hướng không hợp lệ",
                "The application or its redirect address is not valid",
            ),
            csrf: s(
                "Biểu mẫu đã hết hạn hoặc không được gửi từ trang này. Hãy quay lại ứng dụng và thử lại.",
                "This form has expired or was not sent from this page. Go back to the application and try again.",
            ),
            too_many: s(
                "Quá nhiều lần thử. Vui lòng đợi một lát rồi thử lại.",
                "Too many attempts. Wait a moment and try again.",
            ),
            malformed: s(
                "Yêu cầu không hợp lệ (tham số lặp lại hoặc không phải UTF-8).",
                "The request is malformed (a repeated parameter, or not UTF-8).",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_str(accept).unwrap(),
        );
        h
    }

    #[test]
    fn ui_locales_wins_over_accept_language() {
        let params = HashMap::from([("ui_locales".to_owned(), "fr en-GB".to_owned())]);
        assert_eq!(Lang::choose(Some(&params), &headers("vi")), Lang::En);
    }

    #[test]
    fn accept_language_is_ranked_by_quality_and_defaults_to_vietnamese() {
        assert_eq!(
            Lang::choose(None, &headers("vi;q=0.5, en-US;q=0.9")),
            Lang::En
        );
        assert_eq!(Lang::choose(None, &headers("fr, vi-VN")), Lang::Vi);
        assert_eq!(Lang::choose(None, &headers("de")), Lang::Vi);
        assert_eq!(Lang::choose(None, &HeaderMap::new()), Lang::Vi);
    }

    #[test]
    fn hostile_values_come_out_escaped_in_text_and_attributes() {
        let hostile = "<script>\"&'";
        let params = HashMap::from([
            ("state".to_owned(), hostile.to_owned()),
            ("username".to_owned(), hostile.to_owned()),
        ]);
        let form = LoginForm {
            params: &params,
            client_name: hostile,
            scope: "read",
            message: Some(hostile),
            csrf_token: hostile,
        };
        let page = form.render(Lang::En).into_string();
        assert!(!page.contains("<script"), "{page}");
        let escaped = "&lt;script&gt;&quot;&amp;'";
        for place in [
            format!("<p>{escaped} asks to access your account.</p>"),
            format!("<p id=\"login-error\" role=\"alert\">{escaped}</p>"),
            format!("<input type=\"hidden\" name=\"state\" value=\"{escaped}\">"),
            format!("<input type=\"hidden\" name=\"csrf_token\" value=\"{escaped}\">"),
            format!("value=\"{escaped}\" aria-invalid=\"true\""),
        ] {
            assert!(page.contains(&place), "{place} in {page}");
        }
    }
}
