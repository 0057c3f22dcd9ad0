//! A real third-party client against khoa: Authlib (Python, installed from PyPI by `.ci/run`
//! from `tests/python/requirements.txt`) discovers the endpoints and runs the password,
//! refresh, introspection, revocation and client-credentials calls. A missing Python package
//! fails the test; it never skips.

use serde_json::Value;
use std::path::PathBuf;
use tokio::process::Command;

use crate::helpers::spawn_app;

/// `tests/python/NAME` at the workspace root.
pub fn python_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/python")
        .join(name)
}

/// Runs a Python script to completion and parses the JSON it prints on its last line.
pub async fn run_python(script: &str, args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(python_script(script))
        .args(args)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}); install the peers with \
         `python3 -m pip install -r tests/python/requirements.txt`\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script} printed {stdout:?}: {e}"))
}

#[tokio::test]
async fn authlib_discovers_khoa_and_runs_every_standard_call() {
    let app = spawn_app().await;
    let secret = app
        .add_confidential_client("authlib-app", "read offline_access", |c| {
            c.policy.refresh = khoa_core::model::RefreshIssuance::OfflineAccess;
        })
        .await;
    let alice = app.add_user("alice", "alice-password", None).await;
    let issuer = app.issuer();

    let out = run_python(
        "authlib_client.py",
        &[&issuer, "authlib-app", &secret, "alice", "alice-password"],
    )
    .await;

    assert_eq!(out["metadata_issuer"], issuer);
    assert_eq!(out["password"]["token_type"], "Bearer");
    assert_eq!(out["password"]["has_refresh_token"], true);
    assert_eq!(out["password"]["scope"], "offline_access read");
    assert_eq!(out["refresh"]["rotated"], true);
    assert_eq!(out["refresh"]["new_access"], true);
    let live = &out["introspect_live"];
    assert_eq!(live["active"], true, "{live}");
    assert_eq!(live["sub"], alice.id.as_str());
    assert_eq!(live["client_id"], "authlib-app");
    assert_eq!(
        out["introspect_spent"],
        serde_json::json!({ "active": false })
    );
    assert_eq!(out["revoke_status"], 200);
    assert_eq!(
        out["introspect_revoked"],
        serde_json::json!({ "active": false })
    );
    let cc = &out["client_credentials"];
    assert_eq!(cc["token_type"], "Bearer");
    assert_eq!(cc["has_refresh_token"], false);
    assert_eq!(cc["introspect"]["active"], true);
    assert_eq!(cc["introspect"]["sub"], "authlib-app");
}
