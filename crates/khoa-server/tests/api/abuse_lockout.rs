//! Brute force: the lock after repeated failed sign-ins, in each password dialect's own error
//! shape, with `Retry-After`; the right password refused while locked; `khoa user unlock`; and
//! guesses sent all at once, which must not check more passwords than sequential ones would
//! (issue 13 §4).

use khoa_server::demo::{
    DERIVATIVE_PASSWORD, DERIVATIVE_USERNAME, OAUTH2_PASSWORD, OAUTH2_PUBLIC_CLIENT,
    OAUTH2_USERNAME,
};
use reqwest::{Response, StatusCode};
use serde_json::json;
use tokio::task::JoinSet;

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
        // Room in the Argon2 queue for a whole burst: a guess shed with 503 would prove nothing.
        c.password_hash.max_concurrent = 2;
        c.password_hash.max_queue = 32;
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
        // Long enough that the wall clock, which still runs under the moved one, cannot end
        // the lock between the failures and the check on a loaded machine.
        c.lockout.base_secs = 600;
        c.lockout.max_secs = 600;
    })
    .await;
    for _ in 0..2 {
        grant(&app, OAUTH2_USERNAME, "wrong").await;
    }
    let locked = grant(&app, OAUTH2_USERNAME, OAUTH2_PASSWORD).await;
    let left = retry_after(&locked).expect("locked, with Retry-After");
    assert!((590..=600).contains(&left), "{left}");
    app.advance(601);
    token_ok(grant(&app, OAUTH2_USERNAME, OAUTH2_PASSWORD).await).await;
}

// ---- guesses sent together (issue 13 §4) ----

/// What one guess of a burst was told: its status, its `Retry-After`, its body.
struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: String,
}

/// `count` requests sent at once, the i-th made by `request(i)`; their answers.
async fn burst(count: usize, request: impl Fn(usize) -> reqwest::RequestBuilder) -> Vec<Answer> {
    let mut sent = JoinSet::new();
    for i in 0..count {
        let req = request(i);
        sent.spawn(async move {
            let res = req.send().await.expect("the request completes");
            Answer {
                status: res.status(),
                retry_after: retry_after(&res),
                body: res.text().await.unwrap(),
            }
        });
    }
    sent.join_all().await
}

/// A burst of password grants for `username`, all with wrong passwords.
async fn wrong_guesses(app: &TestApp, username: &str, count: usize) -> Vec<Answer> {
    burst(count, |i| {
        let password = format!("wrong guess {i}");
        let form = [
            ("grant_type", "password"),
            ("client_id", OAUTH2_PUBLIC_CLIENT),
            ("username", username),
            ("password", &password),
        ];
        app.client
            .post(app.url("/connect/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(crate::helpers::form_body(&form))
    })
    .await
}

/// Splits a burst's answers into the guesses that were checked ("incorrect", no
/// `Retry-After`) and those refused unchecked for the lock; every answer must be one of the two.
fn checked_and_locked(answers: &[Answer]) -> (usize, Vec<u64>) {
    let mut checked = 0;
    let mut locked = Vec::new();
    for a in answers {
        match a.retry_after {
            None => checked += 1,
            Some(secs) => locked.push(secs),
        }
    }
    (checked, locked)
}

#[tokio::test]
async fn sixteen_wrong_guesses_at_once_check_only_threshold_passwords_and_lock_for_the_base_time() {
    // Arrange: threshold 3, base 60 s, max 600 s.
    let app = app().await;

    // Act: 16 wrong guesses for one account, all in flight together.
    let answers = wrong_guesses(&app, OAUTH2_USERNAME, 16).await;

    // Assert: as many were checked as sequential guesses would have been (OWASP ASVS 2.2.1,
    // NIST SP 800-63B §5.2.2: the limit is on guesses checked, not on guesses answered), …
    for a in &answers {
        assert_eq!(a.status, 400, "{}", a.body);
        assert!(a.body.contains("invalid_grant"), "{}", a.body);
    }
    let (checked, locked) = checked_and_locked(&answers);
    assert_eq!(checked, 3, "guesses checked before the lock");
    assert_eq!(locked.len(), 13);
    // … the others were told the lock in the dialect's shape, and the lock is the first one,
    // base_secs, not one escalated by every guess of the burst (600 s).
    for secs in locked {
        assert!((59..=60).contains(&secs), "Retry-After {secs}");
    }
    let after = grant(&app, OAUTH2_USERNAME, OAUTH2_PASSWORD).await;
    let secs = retry_after(&after).expect("the right password is refused during the lock");
    assert!((59..=60).contains(&secs), "Retry-After {secs}");
    let state = app
        .engine
        .admin()
        .login_failures(OAUTH2_USERNAME)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.failures, 3, "only checked guesses count");
}

#[tokio::test]
async fn a_burst_on_an_unknown_username_is_checked_and_locked_alike() {
    let app = app().await;
    let answers = wrong_guesses(&app, "nobody@tripdata.vn", 16).await;
    let (checked, locked) = checked_and_locked(&answers);
    // Same count, same lock as for the real account: the burst reveals no account.
    assert_eq!((checked, locked.len()), (3, 13));
    assert!(locked.iter().all(|s| (59..=60).contains(s)), "{locked:?}");
}

#[tokio::test]
async fn the_derivative_dialect_checks_only_threshold_guesses_of_a_burst_and_answers_the_rest_locked()
 {
    let app = app().await;
    let answers = burst(16, |i| {
        let body = json!({ "username": DERIVATIVE_USERNAME, "password": format!("wrong {i}") });
        app.client
            .post(app.url(DERIVATIVE_PATH))
            .header("content-type", "application/json")
            .body(body.to_string())
    })
    .await;
    let (checked, locked) = checked_and_locked(&answers);
    assert_eq!((checked, locked.len()), (3, 13));
    for a in answers.iter().filter(|a| a.retry_after.is_some()) {
        assert_eq!(a.status, 401);
        assert!(a.body.contains("-108 "), "the locked code: {}", a.body);
    }
    assert!(locked.iter().all(|s| (59..=60).contains(s)), "{locked:?}");
}
