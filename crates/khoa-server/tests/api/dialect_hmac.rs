//! HMAC request signatures (`hmac_sha512`, `hmac_sha256`) from a small definition file: a
//! secret registered with `khoa client key add --hmac-secret-file` against the running
//! server's database, sealed there and opened by the server; wrong, missing, stale and replayed
//! signatures in the definition's shape; an RSA key never passing for a secret, nor the other
//! way. Requests are signed with the server's own clock (`engine.now()`), never slept on.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rsa::pkcs8::EncodePublicKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, pkcs1v15::SigningKey};
use serde_json::{Value, json};
use sha2::{Sha256, Sha512};

use crate::cli::ok;
use crate::helpers::{TestApp, spawn_app_with};

const CLIENT: &str = "hmac-merchant";
const SECRET: &str = "k7Qp2vX9mL4sN8wR1tY6uZ3aB5cD0eFgHjK";
const SHA512_PATH: &str = "/hmac/v1/token";
const SHA256_PATH: &str = "/hmac/v2/token";
const RSA_PATH: &str = "/hmac/rsa/token";

/// Three endpoints alike but for the signature kind; a 403 for a bad signature, so that the
/// status is seen to be the definition's, not the kind's default 401.
const DEFINITION: &str = r#"
name = "hmac_test"
title = "Client credentials signed with a shared secret"

[endpoints.sha512]
path = "/hmac/v1/token"
grant = "client_credentials"
body = "json"
inputs = { client_id = "header.X-PARTNER-ID" }
signature = { kind = "hmac_sha512", header = "X-SIGNATURE", payload = "{header.X-PARTNER-ID}:{header.X-TIMESTAMP}", timestamp = "header.X-TIMESTAMP", window_secs = 120 }
response.body = { token = "{access_token}", expires_in = "{expires_in}" }

[endpoints.sha256]
path = "/hmac/v2/token"
grant = "client_credentials"
body = "json"
inputs = { client_id = "header.X-PARTNER-ID" }
signature = { kind = "hmac_sha256", header = "X-SIGNATURE", payload = "{header.X-PARTNER-ID}:{header.X-TIMESTAMP}", timestamp = "header.X-TIMESTAMP", window_secs = 120 }
response.body = { token = "{access_token}", expires_in = "{expires_in}" }

[endpoints.rsa]
path = "/hmac/rsa/token"
grant = "client_credentials"
body = "json"
inputs = { client_id = "header.X-PARTNER-ID" }
signature = { kind = "rsa_sha256", header = "X-SIGNATURE", payload = "{header.X-PARTNER-ID}:{header.X-TIMESTAMP}", timestamp = "header.X-TIMESTAMP", window_secs = 120 }
response.body = { token = "{access_token}", expires_in = "{expires_in}" }

[errors]
body = { code = "{code}", message = "{message}" }

[errors.cases]
malformed = { code = "BAD_REQUEST", message = "bad request" }
missing_field = { code = "MISSING", message = "{field} is required" }
server_error = { code = "SERVER", message = "server error" }
bad_signature = { status = 403, code = "SIGNATURE", message = "signature rejected" }
stale_signature = { code = "TIMESTAMP", message = "timestamp outside the window" }
replayed_signature = { code = "REPLAY", message = "signature already used" }
"#;

fn utc(unix: i64) -> String {
    let t = khoa_dialect::template::Template::compile(&json!("{t|rfc3339}"), &|_| true).unwrap();
    t.render(&|_| Some(unix.into()))
        .as_str()
        .unwrap()
        .to_owned()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn hmac_sha512(secret: &[u8], payload: &str) -> String {
    let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(payload.as_bytes());
    b64(&mac.finalize().into_bytes())
}

fn hmac_sha256(secret: &[u8], payload: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(payload.as_bytes());
    b64(&mac.finalize().into_bytes())
}

fn rsa_sha256(key: &RsaPrivateKey, payload: &str) -> String {
    b64(&SigningKey::<Sha256>::new(key.clone())
        .sign(payload.as_bytes())
        .to_bytes())
}

struct Hmacs {
    app: TestApp,
    _defs: tempfile::TempDir,
}

/// The server with the definition, and `client` holding `SECRET` under kid `h1`, registered
/// by the CLI on the server's own database and master key.
async fn hmac_app(client: &str) -> Hmacs {
    let defs = tempfile::tempdir().unwrap();
    std::fs::write(defs.path().join("hmac_test.toml"), DEFINITION).unwrap();
    let dir = defs.path().to_owned();
    let app = spawn_app_with(|c| c.dialects.dir = Some(dir)).await;
    app.add_confidential_client(client, "read", |_| {}).await;
    add_secret(&app, client, "h1", SECRET).await;
    Hmacs { app, _defs: defs }
}

async fn add_secret(app: &TestApp, client: &str, kid: &str, secret: &str) {
    let file = app.dir.path().join(format!("{kid}.secret"));
    // With the line ending an editor leaves: not part of the secret.
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let out = ok(
        app.dir.path(),
        &[
            "client",
            "key",
            "add",
            client,
            "--kid",
            kid,
            "--hmac-secret-file",
            file.to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert_eq!(out.trim(), format!("kid: {kid}"));
}

impl Hmacs {
    async fn request(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let res = self
            .app
            .post_json(path, headers, &json!({"grant_type": "client_credentials"}))
            .await;
        let status = res.status().as_u16();
        (status, res.json().await.expect("a JSON body"))
    }

    /// A request of `CLIENT` to `path`, signed `skew` seconds off the server's clock by `sign`.
    async fn signed(&self, path: &str, skew: i64, sign: impl Fn(&str) -> String) -> (u16, Value) {
        let stamp = utc(self.app.engine.now() + skew);
        let signature = sign(&format!("{CLIENT}:{stamp}"));
        self.request(
            path,
            &[
                ("X-PARTNER-ID", CLIENT),
                ("X-TIMESTAMP", &stamp),
                ("X-SIGNATURE", &signature),
            ],
        )
        .await
    }
}

fn refused((status, body): (u16, Value), code: &str, why: &str) {
    let expected = match code {
        "SIGNATURE" => 403,
        "MISSING" => 400,
        _ => 401,
    };
    assert_eq!(status, expected, "{why}: {body}");
    assert_eq!(body["code"], code, "{why}: {body}");
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "the definition's shape: {body}"
    );
}

#[tokio::test]
async fn an_hmac_sha512_signature_gets_a_token() {
    let h = hmac_app(CLIENT).await;
    let (status, body) = h
        .signed(SHA512_PATH, 0, |p| hmac_sha512(SECRET.as_bytes(), p))
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("a token");
    assert_eq!(h.app.protected(token).await.status(), 200);

    // Any of the client's secrets verifies: a second one, for a rotation.
    let next = "Zx8Wv7Ut6Sr5Qp4On3Ml2Kj1Ih0GfEdCbA9";
    add_secret(&h.app, CLIENT, "h2", next).await;
    let (status, body) = h
        .signed(SHA512_PATH, 1, |p| hmac_sha512(next.as_bytes(), p))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn hmac_sha256_works_too_and_only_with_its_own_hash() {
    let h = hmac_app(CLIENT).await;
    let (status, body) = h
        .signed(SHA256_PATH, 0, |p| hmac_sha256(SECRET.as_bytes(), p))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["token"].is_string(), "{body}");

    // The same secret, the other hash: the kind picks it, not the signer.
    let sha512 = h
        .signed(SHA256_PATH, 1, |p| hmac_sha512(SECRET.as_bytes(), p))
        .await;
    refused(sha512, "SIGNATURE", "SHA-512 at the SHA-256 endpoint");
    let sha256 = h
        .signed(SHA512_PATH, 2, |p| hmac_sha256(SECRET.as_bytes(), p))
        .await;
    refused(sha256, "SIGNATURE", "SHA-256 at the SHA-512 endpoint");
}

#[tokio::test]
async fn wrong_missing_stale_and_replayed_hmac_signatures_are_refused() {
    let h = hmac_app(CLIENT).await;
    let secret = SECRET.as_bytes();

    let other = h
        .signed(SHA512_PATH, 0, |p| {
            hmac_sha512(b"another secret of at least 32 bytes!", p)
        })
        .await;
    refused(other, "SIGNATURE", "another secret");
    let other_payload = h
        .signed(SHA512_PATH, 0, |p| {
            hmac_sha512(secret, &p.replace(CLIENT, "someone-else"))
        })
        .await;
    refused(other_payload, "SIGNATURE", "another payload");
    // A tag cut short is not accepted as a prefix match.
    let truncated = h
        .signed(SHA512_PATH, 0, |p| {
            use base64::Engine as _;
            let full = base64::engine::general_purpose::STANDARD
                .decode(hmac_sha512(secret, p))
                .unwrap();
            b64(&full[..32])
        })
        .await;
    refused(truncated, "SIGNATURE", "a truncated tag");
    refused(
        h.signed(SHA512_PATH, 0, |_| "%%%".into()).await,
        "SIGNATURE",
        "not base64",
    );

    let stale = h
        .signed(SHA512_PATH, -3600, |p| hmac_sha512(secret, p))
        .await;
    refused(stale, "TIMESTAMP", "an hour old");
    let ahead = h
        .signed(SHA512_PATH, 3600, |p| hmac_sha512(secret, p))
        .await;
    refused(ahead, "TIMESTAMP", "an hour ahead");

    // Missing: the signature header.
    let stamp = utc(h.app.engine.now());
    let (status, body) = h
        .request(
            SHA512_PATH,
            &[("X-PARTNER-ID", CLIENT), ("X-TIMESTAMP", &stamp)],
        )
        .await;
    refused((status, body.clone()), "MISSING", "no signature");
    assert_eq!(body["message"], "X-SIGNATURE is required");

    // The same signed request twice: the second is a replay.
    let signature = hmac_sha512(secret, &format!("{CLIENT}:{stamp}"));
    let headers = [
        ("X-PARTNER-ID", CLIENT),
        ("X-TIMESTAMP", stamp.as_str()),
        ("X-SIGNATURE", signature.as_str()),
    ];
    assert_eq!(h.request(SHA512_PATH, &headers).await.0, 200);
    refused(
        h.request(SHA512_PATH, &headers).await,
        "REPLAY",
        "the same signature again",
    );
}

#[tokio::test]
async fn an_rsa_key_never_passes_for_a_secret_nor_a_secret_for_an_rsa_key() {
    let h = hmac_app("hmac-only").await;
    let rsa = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let der = rsa.to_public_key().to_public_key_der().unwrap().into_vec();
    h.app.add_confidential_client(CLIENT, "read", |_| {}).await;
    h.app
        .engine
        .tokens()
        .client_keys()
        .add_public_key(CLIENT, Some("r1".into()), der.clone())
        .await
        .unwrap();
    let pem = rsa
        .to_public_key()
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();

    // An RSA-only client: its public key, which anyone may know, is no HMAC secret, as DER or
    // as PEM (the classic confusion of algorithms), and its RSA signature no HMAC tag.
    refused(
        h.signed(SHA512_PATH, 0, |p| hmac_sha512(&der, p)).await,
        "SIGNATURE",
        "HMAC keyed with the DER public key",
    );
    refused(
        h.signed(SHA256_PATH, 0, |p| hmac_sha256(pem.as_bytes(), p))
            .await,
        "SIGNATURE",
        "HMAC keyed with the PEM public key",
    );
    refused(
        h.signed(SHA512_PATH, 1, |p| rsa_sha256(&rsa, p)).await,
        "SIGNATURE",
        "an RSA signature at an HMAC endpoint",
    );
    // The RSA endpoint takes it: the key is fine, the kind was not.
    let (status, body) = h.signed(RSA_PATH, 2, |p| rsa_sha256(&rsa, p)).await;
    assert_eq!(status, 200, "{body}");

    // And the other way: the client now holds a secret too, which the RSA endpoint ignores.
    add_secret(&h.app, CLIENT, "h1", SECRET).await;
    refused(
        h.signed(RSA_PATH, 3, |p| hmac_sha512(SECRET.as_bytes(), p))
            .await,
        "SIGNATURE",
        "an HMAC tag at the RSA endpoint",
    );
    let (status, body) = h
        .signed(SHA512_PATH, 4, |p| hmac_sha512(SECRET.as_bytes(), p))
        .await;
    assert_eq!(status, 200, "{body}");
}
