//! Brute force: the lock after repeated failed sign-ins, in each password dialect's own error
//! shape, with `Retry-After`; the right password refused while locked; `khoa user unlock`.

use khoa_server::demo::{
    DERIVATIVE_PASSWORD, DERIVATIVE_USERNAME, OAUTH2_PASSWORD, OAUTH2_PUBLIC_CLIENT,
    OAUTH2_USERNAME,
};
use reqwest::Response;
use serde_json::json;

use crate::cli::ok;
use crate::helpers::{TestApp, cache_control, oauth_error, spawn_demo_app_with, token_ok};

const DERIVATIVE_PATH: &str = "/oapi/auth/gen-secret-key/derivative";

/// Three failures lock for 60 s (then 120 s, …): small enough to reach, long enough that no
/// lock expires during a test.
async fn app() -> TestApp {
    spawn_demo_app_with(|c| {
        c.lockout.threshold = 3;
        c.lockout.base_secs = 60;
        c.lockout.max_secs = 600;
    })
    .await
}

fn retry_after(res: &Response) -> Option<u64> {
    res.headers().get("retry-after").map(|v| {
        v.to_str()
            .unwrap()
            .parse()
            .expect("Retry-After in whole seconds")
    })
}

async fn grant(app: &TestApp, username: &str, password: &str) -> Response {
    app.password_grant(OAUTH2_PUBLIC_CLIENT, username, password, None)
        .await
}

#[tokio::test]
async fn the_oauth2_dialect_answers_a_locked_account_with_invalid_grant_and_retry_after() {
    let app = app().await;
    for _ in 0..3 {
        let res = grant(&app, OAUTH2_USERNAME, "wrong").await;
        assert_eq!(
            retry_after(&res),
            None,
            "a plain failure has no Retry-After"
        );
        oauth_error(res, 400, "invalid_grant").await;
    }
    // The right password, during the lock.
    let res = grant(&app, OAUTH2_USERNAME, OAUTH2_PASSWORD).await;
    let secs = retry_after(&res).expect("a locked account says when to retry");
    assert!((59..=60).contains(&secs), "{secs}");
    let body = oauth_error(res, 400, "invalid_grant").await;
    assert_eq!(
        body,
        json!({
            "error": "invalid_grant",
            "error_description":
                "too many failed sign-ins: the account is temporarily locked, retry later",
        })
    );
    // An unknown username is locked and answered alike: the lock reveals no account.
    for _ in 0..3 {
        grant(&app, "nobody@tripdata.vn", "wrong").await;
    }
    let unknown = grant(&app, "nobody@tripdata.vn", "whatever").await;
    assert!(retry_after(&unknown).is_some());
    assert_eq!(oauth_error(unknown, 400, "invalid_grant").await, body);
}

#[tokio::test]
async fn the_derivative_dialect_answers_a_locked_account_with_its_locked_code() {
    let app = app().await;
    let login = async |password: &str| {
        app.post_json(
            DERIVATIVE_PATH,
            &[],
            &json!({ "username": DERIVATIVE_USERNAME, "password": password }),
        )
        .await
    };
    for _ in 0..3 {
        assert_eq!(login("wrong").await.status(), 401);
    }
    let res = login(DERIVATIVE_PASSWORD).await;
    assert_eq!(res.status(), 401);
    assert!(retry_after(&res).is_some_and(|s| (59..=60).contains(&s)));
    assert_eq!(cache_control(&res), Some("no-store"));
    let text = res.text().await.unwrap();
    let expected = json!({
        "code": "OAPI_FNO_500",
        "messageParams": {
            "error": "server_error",
            "error_description":
                "-108 Tài khoản tạm thời bị khóa do đăng nhập sai nhiều lần, vui lòng thử lại sau",
            "s": 500,
        },
        "params": null,
        "source": "oapi-bridge-fno",
        "message": null,
    });
    assert_eq!(text, expected.to_string(), "byte for byte");
}

#[tokio::test]
async fn khoa_user_unlock_lifts_the_lock_of_a_running_server_at_once() {
    let app = app().await;
    for _ in 0..3 {
        grant(&app, OAUTH2_USERNAME, "wrong").await;
    }
    assert!(retry_after(&grant(&app, OAUTH2_USERNAME, OAUTH2_PASSWORD).await).is_some());
    let out = ok(app.dir.path(), &["user", "unlock", OAUTH2_USERNAME], None).await;
    assert_eq!(
        out.trim(),
        format!("{OAUTH2_USERNAME} unlocked 3 failed sign-ins forgotten")
    );
    token_ok(grant(&app, OAUTH2_USERNAME, OAUTH2_PASSWORD).await).await;
    let again = ok(app.dir.path(), &["user", "unlock", OAUTH2_USERNAME], None).await;
    assert_eq!(
        again.trim(),
        format!("{OAUTH2_USERNAME} has no failed sign-ins")
    );
}

#[tokio::test]
async fn a_lock_expires_by_itself() {
    let app = spawn_demo_app_with(|c| {
        c.lockout.threshold = 2;
        c.lockout.base_secs = 1;
        c.lockout.max_secs = 1;
    })
    .await;
    for _ in 0..2 {
        grant(&app, OAUTH2_USERNAME, "wrong").await;
    }
    let locked = grant(&app, OAUTH2_USERNAME, OAUTH2_PASSWORD).await;
    assert_eq!(retry_after(&locked), Some(1));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    token_ok(grant(&app, OAUTH2_USERNAME, OAUTH2_PASSWORD).await).await;
}
