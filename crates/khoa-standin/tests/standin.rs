//! The stand-in over real HTTP, as the client and the agent under test will see it. Time is a
//! `ManualClock`; overlap comes from `hold_tokens`, never from a sleep. The only real-clock
//! timer is `within`'s guard, which turns a hang into a failure.

use std::future::Future;
use std::time::Duration;

use khoa_standin::{CLIENT_ID, CLIENT_SECRET, Counts, ManualClock, PASSWORD, StandIn, USERNAME};
use reqwest::StatusCode;
use serde_json::Value;

async fn started() -> (ManualClock, StandIn) {
    let clock = ManualClock::new(1_000_000);
    let standin = StandIn::start(clock.as_now()).await;
    (clock, standin)
}

/// Fails the test instead of hanging it; nothing waits for this timer to pass.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after 10 s"))
}

/// A reqwest client. Built beside khoa-server, the workspace's reqwest speaks TLS through
/// rustls without a crypto provider of its own (khoa-client's `agent` feature) and panics
/// unless one is installed: ring, the workspace's one backend.
fn http_client() -> reqwest::Client {
    #[allow(deprecated, reason = "ring is the one crypto backend (Cargo.toml)")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A token request authenticated by HTTP Basic.
async fn token_call(
    http: &reqwest::Client,
    standin: &StandIn,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    http.post(standin.url("/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .expect("the token endpoint answers")
}

/// A token request with the client's credentials in the body.
async fn token_call_in_body(
    http: &reqwest::Client,
    standin: &StandIn,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    let mut all = vec![("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)];
    all.extend_from_slice(pairs);
    http.post(standin.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&all))
        .send()
        .await
        .expect("the token endpoint answers")
}

async fn ok_json(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("a JSON answer")
}

async fn client_credentials(http: &reqwest::Client, standin: &StandIn) -> String {
    let answer =
        ok_json(token_call(http, standin, &[("grant_type", "client_credentials")]).await).await;
    answer["access_token"].as_str().unwrap().to_owned()
}

/// A password login: (access token, refresh token).
async fn password_login(http: &reqwest::Client, standin: &StandIn) -> (String, String) {
    let pairs = [
        ("grant_type", "password"),
        ("username", USERNAME),
        ("password", PASSWORD),
    ];
    let answer = ok_json(token_call(http, standin, &pairs).await).await;
    (
        answer["access_token"].as_str().unwrap().to_owned(),
        answer["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(http: &reqwest::Client, standin: &StandIn, token: &str) -> reqwest::Response {
    token_call(
        http,
        standin,
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await
}

async fn get_resource(http: &reqwest::Client, standin: &StandIn, token: &str) -> reqwest::Response {
    http.get(standin.url("/resource/data"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the resource answers")
}

async fn error_of(response: reqwest::Response) -> String {
    let body: Value = response.json().await.expect("a JSON error");
    body["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_client_credentials_token_works_on_the_resource() {
    let (_clock, standin) = started().await;
    let http = http_client();

    let answer =
        ok_json(token_call(&http, &standin, &[("grant_type", "client_credentials")]).await).await;
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 60);
    assert_eq!(answer["scope"], "read");
    assert!(answer.get("refresh_token").is_none(), "{answer}");
    let token = answer["access_token"].as_str().unwrap();

    let echo = ok_json(get_resource(&http, &standin, token).await).await;
    assert_eq!(echo["ok"], true);
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/resource/data");
    assert_eq!(echo["query"], Value::Null);

    let at_bare_path = http
        .delete(standin.url("/resource"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(at_bare_path.status(), StatusCode::OK);
    assert_eq!(
        standin.counts(),
        Counts {
            token_calls: 1,
            logins: 1,
            max_concurrent_token_calls: 1,
            resource_calls: 2,
            ..Counts::default()
        }
    );
}

#[tokio::test]
async fn credentials_in_the_body_work_and_the_scope_asked_is_granted() {
    let (_clock, standin) = started().await;
    let http = http_client();
    let pairs = [
        ("grant_type", "client_credentials"),
        ("scope", "read write"),
    ];
    let answer = ok_json(token_call_in_body(&http, &standin, &pairs).await).await;
    assert_eq!(answer["scope"], "read write");
    let token = answer["access_token"].as_str().unwrap();
    assert_eq!(
        get_resource(&http, &standin, token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn refusals_are_rfc_6749_errors() {
    let (_clock, standin) = started().await;
    let http = http_client();

    let wrong_secret = http
        .post(standin.url("/token"))
        .basic_auth(CLIENT_ID, Some("not-the-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("grant_type", "client_credentials")]))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_secret.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong_secret.headers().contains_key("www-authenticate"));
    assert_eq!(error_of(wrong_secret).await, "invalid_client");

    let both_ways = token_call(
        &http,
        &standin,
        &[
            ("grant_type", "client_credentials"),
            ("client_secret", CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(both_ways.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_of(both_ways).await, "invalid_request");

    let unknown_grant = token_call(&http, &standin, &[("grant_type", "urn:example:magic")]).await;
    assert_eq!(unknown_grant.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_of(unknown_grant).await, "unsupported_grant_type");

    let bad_user = [
        ("grant_type", "password"),
        ("username", USERNAME),
        ("password", "guess"),
    ];
    let bad_user = token_call(&http, &standin, &bad_user).await;
    assert_eq!(bad_user.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_of(bad_user).await, "invalid_grant");

    let json_body = http
        .post(standin.url("/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("content-type", "application/json")
        .body(r#"{"grant_type":"client_credentials"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_of(json_body).await, "invalid_request");

    let counts = standin.counts();
    assert_eq!((counts.token_calls, counts.logins), (5, 0));
}

#[tokio::test]
async fn a_token_expires_by_the_injected_clock() {
    let (clock, standin) = started().await;
    let http = http_client();
    standin.set_ttl_ms(2_500);

    let answer =
        ok_json(token_call(&http, &standin, &[("grant_type", "client_credentials")]).await).await;
    assert_eq!(answer["expires_in"], 3, "2.5 s is announced rounded up");
    let token = answer["access_token"].as_str().unwrap();

    clock.advance(2_499);
    assert_eq!(
        get_resource(&http, &standin, token).await.status(),
        StatusCode::OK
    );
    assert_eq!(standin.counts().expired_presented, 0);

    clock.advance(1);
    let expired = get_resource(&http, &standin, token).await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        expired.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    let counts = standin.counts();
    assert_eq!((counts.expired_presented, counts.unknown_presented), (1, 0));
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reuse_is_counted() {
    let (_clock, standin) = started().await;
    let http = http_client();
    let (_, first) = password_login(&http, &standin).await;

    let answer = ok_json(refresh(&http, &standin, &first).await).await;
    let second = answer["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first, "a refresh rotates the refresh token");
    assert_eq!(answer["scope"], "read", "the original scope is kept");
    let access = answer["access_token"].as_str().unwrap();
    assert_eq!(
        get_resource(&http, &standin, access).await.status(),
        StatusCode::OK
    );

    let reused = refresh(&http, &standin, &first).await;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_of(reused).await, "invalid_grant");

    ok_json(refresh(&http, &standin, &second).await).await;
    let counts = standin.counts();
    assert_eq!(
        (counts.logins, counts.refreshes, counts.refresh_reused),
        (1, 2, 1)
    );
}

#[tokio::test]
async fn a_refused_refresh_is_invalid_grant_and_not_a_reuse() {
    let (_clock, standin) = started().await;
    let http = http_client();
    let (_, token) = password_login(&http, &standin).await;

    standin.refuse_refresh(true);
    let refused = refresh(&http, &standin, &token).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_of(refused).await, "invalid_grant");

    standin.refuse_refresh(false);
    ok_json(refresh(&http, &standin, &token).await).await;
    let counts = standin.counts();
    assert_eq!((counts.refreshes, counts.refresh_reused), (1, 0));
}

#[tokio::test]
async fn held_token_calls_overlap_until_released() {
    let (_clock, standin) = started().await;
    let http = http_client();
    standin.hold_tokens();

    let calls: Vec<_> = (0..5)
        .map(|_| {
            let http = http.clone();
            let url = standin.url("/token");
            tokio::spawn(async move {
                http.post(url)
                    .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form(&[("grant_type", "client_credentials")]))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    within("5 held calls", standin.wait_until_held(5)).await;
    assert_eq!(standin.held_token_calls(), 5);
    let counts = standin.counts();
    assert_eq!(
        (
            counts.token_calls,
            counts.max_concurrent_token_calls,
            counts.logins
        ),
        (5, 5, 0)
    );

    standin.release_tokens();
    for call in calls {
        assert_eq!(
            within("a released call", call).await.unwrap(),
            StatusCode::OK
        );
    }
    within("5 logins", standin.wait_until(|c| c.logins == 5)).await;
    assert_eq!(standin.held_token_calls(), 0);
    assert_eq!(standin.counts().max_concurrent_token_calls, 5);
}

#[tokio::test]
async fn failed_token_calls_answer_the_status_and_retry_after() {
    let (_clock, standin) = started().await;
    let http = http_client();
    standin.fail_tokens(2, 429, Some(7));

    for _ in 0..2 {
        let failed = token_call(&http, &standin, &[("grant_type", "client_credentials")]).await;
        assert_eq!(failed.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(failed.headers()["retry-after"], "7");
        assert_eq!(error_of(failed).await, "temporarily_unavailable");
    }
    client_credentials(&http, &standin).await;

    standin.fail_tokens(1, 500, None);
    let failed = token_call(&http, &standin, &[("grant_type", "client_credentials")]).await;
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!failed.headers().contains_key("retry-after"));
    client_credentials(&http, &standin).await;

    let counts = standin.counts();
    assert_eq!((counts.token_calls, counts.logins), (5, 2));
}

#[tokio::test]
async fn a_down_token_endpoint_answers_503_and_the_resource_keeps_working() {
    let (_clock, standin) = started().await;
    let http = http_client();
    let token = client_credentials(&http, &standin).await;

    standin.set_down(true);
    let down = token_call(&http, &standin, &[("grant_type", "client_credentials")]).await;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_of(down).await, "temporarily_unavailable");
    assert_eq!(
        get_resource(&http, &standin, &token).await.status(),
        StatusCode::OK
    );

    standin.set_down(false);
    client_credentials(&http, &standin).await;
}

/// With one drop armed, a request gets no answer at all (a transport error), and the next one
/// is served.
async fn drop_one_then_serve(http: &reqwest::Client, standin: &StandIn, token: &str) {
    standin.drop_connections(1);
    let dropped = http
        .get(standin.url("/resource/data"))
        .bearer_auth(token)
        .send()
        .await;
    let error = dropped.expect_err("a dropped connection has no answer");
    assert!(error.status().is_none(), "a transport error: {error}");
    assert_eq!(
        get_resource(http, standin, token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_dropped_new_connection_fails_one_request_and_the_next_succeeds() {
    let (_clock, standin) = started().await;
    // No pool: every request opens a connection, so the drop happens at `accept`.
    http_client(); // ring installed
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let token = client_credentials(&http, &standin).await;

    drop_one_then_serve(&http, &standin, &token).await;
    assert_eq!(
        standin.counts().resource_calls,
        1,
        "the dropped one reached no handler"
    );
}

#[tokio::test]
async fn a_pooled_connection_is_dropped_at_its_next_request() {
    let (_clock, standin) = started().await;
    let http = http_client();
    // Leaves a kept-alive connection in the client's pool.
    let token = client_credentials(&http, &standin).await;

    drop_one_then_serve(&http, &standin, &token).await;
    assert_eq!(standin.counts().resource_calls, 1);
}

#[tokio::test]
async fn revoked_tokens_are_unknown_and_a_new_one_works() {
    let (_clock, standin) = started().await;
    let http = http_client();
    let (old, refresh_token) = password_login(&http, &standin).await;

    standin.revoke_all();
    let revoked = get_resource(&http, &standin, &old).await;
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        revoked.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    let counts = standin.counts();
    assert_eq!((counts.unknown_presented, counts.expired_presented), (1, 0));

    // Refresh tokens survive a revocation: one call gets a working token.
    let answer = ok_json(refresh(&http, &standin, &refresh_token).await).await;
    let fresh = answer["access_token"].as_str().unwrap();
    assert_eq!(
        get_resource(&http, &standin, fresh).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn unauthorized_next_refuses_good_tokens_n_times() {
    let (_clock, standin) = started().await;
    let http = http_client();
    let token = client_credentials(&http, &standin).await;

    standin.unauthorized_next(2);
    for _ in 0..2 {
        let refused = get_resource(&http, &standin, &token).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
    }
    assert_eq!(
        get_resource(&http, &standin, &token).await.status(),
        StatusCode::OK
    );
    let counts = standin.counts();
    assert_eq!(
        (
            counts.resource_calls,
            counts.unknown_presented,
            counts.expired_presented
        ),
        (3, 0, 0)
    );
}

#[tokio::test]
async fn a_missing_or_invented_token_counts_as_unknown() {
    let (_clock, standin) = started().await;
    let http = http_client();

    let missing = http.get(standin.url("/resource")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.headers().contains_key("www-authenticate"));
    let invented = get_resource(&http, &standin, "not-a-token").await;
    assert_eq!(invented.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(standin.counts().unknown_presented, 2);
}

#[tokio::test]
async fn the_last_resource_request_is_recorded_as_received() {
    let (_clock, standin) = started().await;
    let http = http_client();
    let token = client_credentials(&http, &standin).await;

    let answer = http
        .post(standin.url("/resource/items/7?page=2&q=a%20b"))
        .bearer_auth(&token)
        .header("X-OTP-Token", "123456")
        .header("x-custom", "one")
        .header("content-type", "application/json")
        .body(r#"{"amount":5}"#)
        .send()
        .await
        .unwrap();
    let echo = ok_json(answer).await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/resource/items/7");
    assert_eq!(echo["query"], "page=2&q=a%20b");
    assert_eq!(echo["body"], r#"{"amount":5}"#);

    let recorded = standin.last_resource_request().expect("a recorded request");
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.path_and_query, "/resource/items/7?page=2&q=a%20b");
    assert_eq!(recorded.path(), "/resource/items/7");
    assert_eq!(recorded.query(), Some("page=2&q=a%20b"));
    assert_eq!(recorded.header("x-otp-token"), Some("123456"));
    assert_eq!(recorded.header("X-Custom"), Some("one"));
    assert!(
        recorded
            .headers
            .iter()
            .any(|(name, _)| name == "x-otp-token"),
        "names are lowercased"
    );
    assert_eq!(
        recorded.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(recorded.body, br#"{"amount":5}"#);
    assert_eq!(standin.resource_requests().len(), 1);

    let token_request = standin
        .last_token_request()
        .expect("a recorded token request");
    assert_eq!(token_request.method, "POST");
    assert_eq!(token_request.body_text(), "grant_type=client_credentials");
}
