//! The audit trail: the events a real server records for each flow (with the right subject
//! and client, never a secret), and `khoa audit list` filtering and ordering them.

use khoa_core::store::{AuditEvent, AuditFilter, AuditKind};
use serde_json::Value;

use crate::cli::{fails, khoa_on, ok, run};
use crate::helpers::{access_token_of, refresh_token_of, spawn_app, token_ok};

async fn events(app: &crate::helpers::TestApp, kind: AuditKind) -> Vec<AuditEvent> {
    let filter = AuditFilter {
        kind: Some(kind),
        limit: 100,
        ..AuditFilter::default()
    };
    app.engine.admin().list_audit(&filter).await.unwrap()
}

#[tokio::test]
async fn each_token_flow_records_its_events_with_subject_and_client_and_no_secret() {
    let app = spawn_app().await;
    app.add_public_client("web", "read offline_access", |c| {
        c.policy.reuse_window = 0;
    })
    .await;
    let alice = app.add_user("alice", "alice's audit password", None).await;

    let wrong = app
        .password_grant("web", "alice", "not alice's password", None)
        .await;
    assert_eq!(wrong.status(), 400);
    let body = token_ok(
        app.password_grant(
            "web",
            "alice",
            "alice's audit password",
            Some("read offline_access"),
        )
        .await,
    )
    .await;
    let (access, refresh) = (access_token_of(&body), refresh_token_of(&body));
    token_ok(app.refresh("web", &refresh).await).await;
    // The first refresh token again, with no retry window: reuse, and the family goes.
    assert_eq!(app.refresh("web", &refresh).await.status(), 400);

    let failure = &events(&app, AuditKind::LoginFailure).await[0];
    assert_eq!(failure.subject.as_deref(), Some("alice"));
    assert_eq!(failure.client_id.as_deref(), Some("web"));
    let success = &events(&app, AuditKind::LoginSuccess).await[0];
    assert_eq!(success.subject.as_deref(), Some(alice.id.as_str()));
    let issued = events(&app, AuditKind::TokenIssued).await;
    let grants: Vec<String> = issued
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.detail).unwrap()["grant"].to_string())
        .collect();
    assert_eq!(
        grants,
        ["\"refresh_token\"", "\"password\""],
        "newest first"
    );
    for kind in [AuditKind::RefreshReuse, AuditKind::FamilyRevoked] {
        let e = &events(&app, kind).await;
        assert_eq!(e.len(), 1, "{kind}");
        assert_eq!(e[0].subject.as_deref(), Some(alice.id.as_str()));
        assert_eq!(e[0].client_id.as_deref(), Some("web"));
    }

    let all = app
        .engine
        .admin()
        .list_audit(&AuditFilter {
            limit: 1000,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    for secret in [
        access.as_str(),
        refresh.as_str(),
        "alice's audit password",
        "not alice's password",
    ] {
        for e in &all {
            assert!(!format!("{e:?}").contains(secret), "{e:?}");
        }
    }
}

#[tokio::test]
async fn khoa_audit_list_shows_admin_actions_filtered_and_newest_first() {
    let dir = crate::cli::migrated().await;
    let dir = dir.path();
    let secret = "an-operator-chosen-client-secret-0123456789";
    ok(
        dir,
        &["client", "add", "svc", "--secret-stdin"],
        Some(&format!("{secret}\n")),
    )
    .await;
    ok(dir, &["user", "add", "bob"], Some("bob's cli password\n")).await;
    ok(dir, &["user", "disable", "bob"], None).await;

    let table = ok(dir, &["audit", "list"], None).await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("TIME"), "{table}");
    let actions: Vec<&str> = lines[1..]
        .iter()
        .map(|l| {
            l.split("\"action\":\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(actions, ["user.disable", "user.add", "client.add"]);
    assert!(!table.contains(secret) && !table.contains("bob's cli password"));

    let json = ok(
        dir,
        &[
            "audit",
            "list",
            "--json",
            "--subject",
            "bob",
            "--limit",
            "1",
        ],
        None,
    )
    .await;
    let rows: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["kind"], "admin");
    assert_eq!(rows[0]["subject"], "bob");
    assert_eq!(rows[0]["detail"]["action"], "user.disable");

    let by_client = ok(dir, &["audit", "list", "--json", "--client", "svc"], None).await;
    assert_eq!(by_client.lines().count(), 1);
    assert!(by_client.contains("client.add"));
    let none = ok(dir, &["audit", "list", "--json", "--kind", "lockout"], None).await;
    assert_eq!(none, "");
    let future = ok(
        dir,
        &["audit", "list", "--json", "--since", "4102444800"],
        None,
    )
    .await;
    assert_eq!(future, "");
    let recent = ok(
        dir,
        &[
            "audit",
            "list",
            "--json",
            "--since",
            "1h",
            "--until",
            "4102444800",
        ],
        None,
    )
    .await;
    assert_eq!(recent.lines().count(), 3);

    let bad_kind = run(khoa_on(dir), &["audit", "list", "--kind", "nonsense"], None).await;
    assert_eq!(bad_kind.status.code(), Some(2), "a usage error");
    assert!(
        bad_kind.stderr.contains("unknown audit kind"),
        "{}",
        bad_kind.stderr
    );
    let err = fails(dir, &["audit", "list", "--since", "yesterday"], None).await;
    assert!(err.contains("--since yesterday"), "{err}");
}
