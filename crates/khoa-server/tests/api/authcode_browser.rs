//! Acceptance: the authorization code + PKCE flow driven end to end in headless Chromium
//! (Debian's `chromium` and `chromedriver`) by `tests/python/authcode_browser.py`: open the
//! authorize URL, fill the form, follow the redirect, exchange the code. The script prints one
//! JSON object; a missing browser is a failure, not a skip.
//!
//! The client's redirect URI is a tiny listener of this test, so the browser really lands on
//! the client's page and the test sees the request it made.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;

use crate::authorization_code::PASSWORD;
use crate::helpers::*;

/// Answers every request with a small page and reports each request line.
fn callback_listener() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let uri = format!("http://{}/callback", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // Drain the headers so the browser sees a clean answer.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let _ = tx.send(line.trim_end().to_owned());
            let body = "<!DOCTYPE html><html lang=\"en\"><title>client</title><p>signed in</p>";
            let _ = (&stream).write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    (uri, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_signs_in_and_the_code_is_exchanged_for_tokens() {
    let app = spawn_app().await;
    let (redirect_uri, callbacks) = callback_listener();
    let registered = redirect_uri.clone();
    app.add_public_client("web", "openid offline_access read", move |c| {
        c.grant_types = vec![khoa_core::model::GrantType::AuthorizationCode];
        c.redirect_uris = vec![registered];
    })
    .await;
    app.add_user("alice", PASSWORD, None).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/authcode_browser.py"
    );

    let (base, uri) = (app.address.clone(), redirect_uri.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .args([
                "--base",
                &base,
                "--client-id",
                "web",
                "--redirect-uri",
                &uri,
            ])
            .args(["--username", "alice", "--password", PASSWORD])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser script failed:\n{stdout}\n{stderr}"
    );
    let result: Value = serde_json::from_str(stdout.trim()).expect("the script prints JSON");
    assert_eq!(result["page_lang"], "en", "{result}");
    assert_eq!(result["username_label"], "Username", "{result}");
    assert_eq!(result["state_returned"], result["state_sent"], "{result}");
    assert_eq!(result["iss"], app.issuer(), "{result}");
    assert_eq!(result["token_status"], 200, "{result}");
    let tokens = &result["tokens"];
    assert_eq!(tokens["token_type"], "Bearer");
    let id_token = tokens["id_token"].as_str().expect("an ID token");
    assert_eq!(jwt_claims(id_token)["nonce"], result["nonce"]);
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        app.protected(access).await.status(),
        reqwest::StatusCode::OK
    );
    let hit = callbacks
        .try_recv()
        .expect("the browser reached the client's redirect URI");
    assert!(hit.starts_with("GET /callback?code="), "{hit}");
}
