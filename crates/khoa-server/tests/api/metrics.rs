//! `GET /metrics` and the request id: the numbers move as requests happen, labelled by route
//! template (never the raw path), and every response carries an `X-Request-Id`.

use crate::helpers::{TestApp, refresh_token_of, spawn_app, spawn_app_with, token_ok};

/// The Prometheus text exposition of `app`.
async fn scrape(app: &TestApp) -> String {
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.contains("text"), "{content_type}");
    res.text().await.unwrap()
}

/// The value of the sample `name` whose labels include every `k="v"` of `labels`; `None` when
/// there is no such series.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted = labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            (metric == name && wanted).then(|| value.parse().unwrap())
        })
        .reduce(|a, b| a + b)
}

#[tokio::test]
async fn the_counters_of_rare_events_are_exposed_at_zero_from_the_start() {
    let app = spawn_app().await;
    app.client.get(app.url("/healthz")).send().await.unwrap();
    let text = scrape(&app).await;
    // Labelled series appear with their first observation; the rest are there from the start.
    for name in [
        "khoa_http_requests_total",
        "khoa_http_request_duration_seconds",
        "khoa_refresh_reuse_detected_total",
        "khoa_lockouts_total",
        "khoa_rate_limited_total",
        "khoa_shed_total",
        "khoa_db_pool_connections",
        "khoa_db_commits_total",
        "khoa_db_write_jobs_total",
    ] {
        let family = name.trim_end_matches("_total");
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{name} missing:\n{text}"
        );
    }
    assert_eq!(sample(&text, "khoa_lockouts_total", &[]), Some(0.0));
    assert_eq!(sample(&text, "khoa_shed_total", &[]), Some(0.0));
    assert_eq!(
        sample(&text, "khoa_refresh_reuse_detected_total", &[]),
        Some(0.0)
    );
    let healthz = [
        ("route", "/healthz"),
        ("dialect", "none"),
        ("status", "200"),
    ];
    assert_eq!(
        sample(&text, "khoa_http_requests_total", &healthz),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "khoa_rate_limited_total", &[("dialect", "oauth2")]),
        Some(0.0)
    );
    assert!(sample(&text, "khoa_db_pool_connections", &[("state", "open")]).unwrap() >= 1.0);
}

#[tokio::test]
async fn requests_tokens_reuse_and_database_calls_are_counted() {
    let app = spawn_app().await;
    app.add_public_client("web", "read offline_access", |c| {
        c.policy.reuse_window = 0;
    })
    .await;
    app.add_user("alice", "alice's metrics password", None)
        .await;

    let body = token_ok(
        app.password_grant(
            "web",
            "alice",
            "alice's metrics password",
            Some("read offline_access"),
        )
        .await,
    )
    .await;
    let refresh = refresh_token_of(&body);
    token_ok(app.refresh("web", &refresh).await).await;
    assert_eq!(app.refresh("web", &refresh).await.status(), 400);
    let wrong = app.password_grant("web", "alice", "wrong", None).await;
    assert_eq!(wrong.status(), 400);

    let text = scrape(&app).await;
    let token_route = [("route", "/connect/token"), ("dialect", "oauth2")];
    let ok = [token_route[0], token_route[1], ("status", "200")];
    assert_eq!(sample(&text, "khoa_http_requests_total", &ok), Some(2.0));
    let bad = [token_route[0], token_route[1], ("status", "400")];
    assert_eq!(sample(&text, "khoa_http_requests_total", &bad), Some(2.0));
    assert_eq!(
        sample(
            &text,
            "khoa_http_request_duration_seconds_count",
            &token_route
        ),
        Some(4.0)
    );
    let password = [("dialect", "oauth2"), ("grant", "password")];
    assert_eq!(
        sample(&text, "khoa_tokens_issued_total", &password),
        Some(1.0)
    );
    let refreshed = [("dialect", "oauth2"), ("grant", "refresh_token")];
    assert_eq!(
        sample(&text, "khoa_tokens_issued_total", &refreshed),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "khoa_refresh_reuse_detected_total", &[]),
        Some(1.0)
    );
    let lookups = [("op", "find_user_by_username")];
    assert_eq!(
        sample(&text, "khoa_db_query_duration_seconds_count", &lookups),
        Some(2.0)
    );
    let rotate = [("op", "rotate")];
    assert_eq!(
        sample(&text, "khoa_db_query_duration_seconds_count", &rotate),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_sqlite_writers_commits_and_the_writes_they_carried_are_counted() {
    let app = spawn_app().await;
    let sqlite = [("backend", "sqlite")];
    let before = scrape(&app).await;
    let commits_before = sample(&before, "khoa_db_commits_total", &sqlite).unwrap();
    let jobs_before = sample(&before, "khoa_db_write_jobs_total", &sqlite).unwrap();

    app.add_public_client("web", "read offline_access", |_| {})
        .await;
    app.add_user("bob", "bob's metrics password", None).await;
    let body = token_ok(
        app.password_grant(
            "web",
            "bob",
            "bob's metrics password",
            Some("offline_access"),
        )
        .await,
    )
    .await;
    token_ok(app.refresh("web", &refresh_token_of(&body)).await).await;

    let after = scrape(&app).await;
    let commits = sample(&after, "khoa_db_commits_total", &sqlite).unwrap() - commits_before;
    let jobs = sample(&after, "khoa_db_write_jobs_total", &sqlite).unwrap() - jobs_before;
    // A client, a user, a grant and a rotation: four durable writes at least, in as many
    // commits or fewer (audit events may ride along as jobs of their own).
    assert!(jobs >= 4.0, "{jobs} jobs");
    assert!(
        commits >= 1.0 && commits <= jobs,
        "{commits} commits for {jobs} jobs"
    );
}

#[tokio::test]
async fn unmatched_paths_are_one_series_and_never_their_raw_path() {
    let app = spawn_app().await;
    let secret_path = "/no/such/path/with-a-token-abc123";
    let res = app.client.get(app.url(secret_path)).send().await.unwrap();
    assert_eq!(res.status(), 404);

    let text = scrape(&app).await;
    let unmatched = [("route", "unmatched"), ("status", "404")];
    assert_eq!(
        sample(&text, "khoa_http_requests_total", &unmatched),
        Some(1.0)
    );
    assert!(!text.contains("with-a-token-abc123"));
}

#[tokio::test]
async fn the_metrics_endpoint_can_be_moved_or_turned_off() {
    let moved = spawn_app_with(|c| c.metrics.path = "/internal/metrics".into()).await;
    let res = moved
        .client
        .get(moved.url("/internal/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let off = spawn_app_with(|c| c.metrics.enabled = false).await;
    let res = off.client.get(off.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn a_sane_request_id_round_trips_and_others_are_replaced() {
    let app = spawn_app().await;
    let id_of = |res: &reqwest::Response| {
        res.headers()
            .get("x-request-id")
            .expect("every response has a request id")
            .to_str()
            .unwrap()
            .to_owned()
    };
    let given = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "lb-7f3a.42_x")
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&given), "lb-7f3a.42_x");

    let absent = app.client.get(app.url("/healthz")).send().await.unwrap();
    let generated = id_of(&absent);
    assert_eq!(generated.len(), 32);
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));

    for insane in ["has space", "semi;colon", &"a".repeat(65)] {
        let res = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", insane)
            .send()
            .await
            .unwrap();
        let id = id_of(&res);
        assert_ne!(id, insane);
        assert_eq!(id.len(), 32);
    }
    // On errors too.
    let missing = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(id_of(&missing).len(), 32);
}
