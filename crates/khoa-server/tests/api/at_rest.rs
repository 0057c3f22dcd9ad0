//! Nothing secret reaches the disk in the clear: not tokens, not passwords, not client secrets
//! (README: SHA-256 token hashes, Argon2id passwords, keyed hashes of client secrets).

use khoa_core::model::AccessTokenFormat;
use std::path::Path;

use crate::helpers::{access_token_of, refresh_token_of, spawn_app, token_ok};

fn contains(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The database file and, when present, its write-ahead log.
fn database_bytes(db: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(db).expect("the database file exists");
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    if let Ok(more) = std::fs::read(&wal) {
        bytes.extend(more);
    }
    bytes
}

#[tokio::test]
async fn no_token_password_or_client_secret_is_stored_in_the_clear() {
    // Arrange: a public opaque-token client with refresh, a confidential client, a user.
    let app = spawn_app().await;
    let password = "erin's very own password 7c1f";
    app.add_public_client("at-rest-app", "read offline_access", |c| {
        c.policy.access_format = AccessTokenFormat::Opaque;
    })
    .await;
    let client_secret = app
        .add_confidential_client("at-rest-service", "read", |c| {
            c.policy.access_format = AccessTokenFormat::Opaque;
        })
        .await;
    app.add_user("erin@example.test", password, None).await;

    // Act: a session, one rotation (which stores a sealed successor), a client_credentials
    // token; then stop, so everything is on disk.
    let first = token_ok(
        app.password_grant(
            "at-rest-app",
            "erin@example.test",
            password,
            Some("read offline_access"),
        )
        .await,
    )
    .await;
    let second = token_ok(app.refresh("at-rest-app", &refresh_token_of(&first)).await).await;
    let service = token_ok(
        app.token_basic(
            "at-rest-service",
            &client_secret,
            &[("grant_type", "client_credentials")],
        )
        .await,
    )
    .await;
    let stopped = app.stop().await;
    let bytes = database_bytes(&stopped.db_path());
    let master_key_path = stopped.config.master_key_file.clone().expect("a key file");
    let master_key = std::fs::read_to_string(master_key_path).expect("the master key file");

    // Assert: what is not secret is there in plain text (so the search can find things) …
    assert!(contains(&bytes, "erin@example.test"));
    assert!(contains(&bytes, "at-rest-service"));
    // … and no secret is.
    let secrets = [
        ("the first refresh token", refresh_token_of(&first)),
        ("the rotated refresh token", refresh_token_of(&second)),
        ("the first opaque access token", access_token_of(&first)),
        ("the rotated opaque access token", access_token_of(&second)),
        (
            "the service's opaque access token",
            access_token_of(&service),
        ),
        ("the user's password", password.to_owned()),
        ("the client secret", client_secret.clone()),
        ("the master key", master_key.trim().to_owned()),
    ];
    for (what, secret) in &secrets {
        assert!(!contains(&bytes, secret), "{what} is stored in the clear");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_master_key_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app().await;

    let path = app.config.master_key_file.clone().expect("a key file");
    let mode = std::fs::metadata(&path)
        .expect("the master key file was created")
        .permissions()
        .mode();

    assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
}
