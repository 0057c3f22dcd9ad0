//! SNAP's B2B access token from `dialects/snap.toml` alone: SHA256withRSA over
//! `X-CLIENT-KEY|X-TIMESTAMP` with the key the client registered (`khoa client key add`), a
//! freshness window, and each signature accepted once.

use std::path::Path;

use reqwest::Method;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, pkcs1v15::SigningKey};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::cli::{fails, khoa_on, migrated, ok, run};
use crate::helpers::{TestApp, keys_in_order, spawn_app_with};

const CLIENT: &str = "snap-merchant";
const PATH: &str = "/v1.0/access-token/b2b";

fn snap_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dialects/snap.toml"))
        .expect("dialects/snap.toml")
}

fn new_key() -> RsaPrivateKey {
    RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("an RSA key")
}

/// The server's time as SNAP writes it: Jakarta time with its offset.
fn jakarta(unix: i64) -> String {
    let t = khoa_dialect::template::Template::compile(
        &json!("{t|offset:Asia/Jakarta|rfc3339}"),
        &|_| true,
    )
    .unwrap();
    t.render(&|_| Some(unix.into()))
        .as_str()
        .unwrap()
        .to_owned()
}

fn sign(key: &RsaPrivateKey, payload: &str) -> String {
    use base64::Engine as _;
    let sig = SigningKey::<Sha256>::new(key.clone()).sign(payload.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
}

struct Snap {
    app: TestApp,
    key: RsaPrivateKey,
    _defs: tempfile::TempDir,
}

async fn snap_app() -> Snap {
    let defs = tempfile::tempdir().unwrap();
    std::fs::write(defs.path().join("snap.toml"), snap_text()).unwrap();
    let dir = defs.path().to_owned();
    let app = spawn_app_with(|c| c.dialects.dir = Some(dir)).await;
    app.add_confidential_client(CLIENT, "read", |_| {}).await;
    let key = new_key();
    let der = key.to_public_key().to_public_key_der().unwrap().into_vec();
    app.engine
        .admin()
        .add_client_key(
            CLIENT,
            Some("k1".into()),
            khoa_core::engine::NewClientKey::RsaPublicKey(der),
        )
        .await
        .unwrap();
    Snap {
        app,
        key,
        _defs: defs,
    }
}

impl Snap {
    async fn request(&self, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
        let res = self.app.post_json(PATH, headers, body).await;
        let status = res.status().as_u16();
        (status, res.json().await.expect("a JSON body"))
    }

    /// A request signed now (`skew` seconds off) with `key`.
    async fn signed(&self, key: &RsaPrivateKey, skew: i64) -> (u16, Value) {
        let stamp = jakarta(self.app.engine.now() + skew);
        let signature = sign(key, &format!("{CLIENT}|{stamp}"));
        self.request(
            &[
                ("X-TIMESTAMP", &stamp),
                ("X-CLIENT-KEY", CLIENT),
                ("X-SIGNATURE", &signature),
            ],
            &json!({"grantType": "client_credentials", "additionalInfo": {}}),
        )
        .await
    }
}

#[tokio::test]
async fn a_signed_request_gets_the_snap_answer_once() {
    let snap = snap_app().await;
    let (status, body) = snap.signed(&snap.key, 0).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        keys_in_order(&body),
        [
            "responseCode",
            "responseMessage",
            "accessToken",
            "tokenType",
            "expiresIn"
        ]
    );
    assert_eq!(body["responseCode"], "2007300");
    assert_eq!(body["tokenType"], "Bearer");
    assert!(
        body["expiresIn"].as_str().unwrap().parse::<u64>().is_ok(),
        "a string: {body}"
    );
    let token = body["accessToken"].as_str().unwrap();
    assert_eq!(snap.app.protected(token).await.status(), 200);
}

#[tokio::test]
async fn wrong_missing_stale_and_replayed_signatures_are_refused() {
    let snap = snap_app().await;
    let unauthorized = |(status, body): (u16, Value), why: &str| {
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(body["responseCode"], "4017300", "{why}: {body}");
        body["responseMessage"].as_str().unwrap().to_owned()
    };

    let m = unauthorized(snap.signed(&new_key(), 0).await, "another key");
    assert_eq!(m, "Unauthorized [Signature]");
    let m = unauthorized(snap.signed(&snap.key, -3600).await, "an hour old");
    assert_eq!(m, "Unauthorized [Timestamp]");
    let m = unauthorized(snap.signed(&snap.key, 3600).await, "an hour ahead");
    assert_eq!(m, "Unauthorized [Timestamp]");

    // The same signed request twice: the second is a replay.
    let stamp = jakarta(snap.app.engine.now());
    let signature = sign(&snap.key, &format!("{CLIENT}|{stamp}"));
    let headers = [
        ("X-TIMESTAMP", stamp.as_str()),
        ("X-CLIENT-KEY", CLIENT),
        ("X-SIGNATURE", signature.as_str()),
    ];
    let body = json!({"grantType": "client_credentials", "additionalInfo": {}});
    assert_eq!(snap.request(&headers, &body).await.0, 200);
    let m = unauthorized(snap.request(&headers, &body).await, "a replay");
    assert_eq!(m, "Unauthorized [Signature already used]");

    // A signature over another client's id, or not base64 at all.
    let other = sign(&snap.key, &format!("someone-else|{stamp}"));
    unauthorized(
        snap.request(&[headers[0], headers[1], ("X-SIGNATURE", &other)], &body)
            .await,
        "signed for another payload",
    );
    unauthorized(
        snap.request(&[headers[0], headers[1], ("X-SIGNATURE", "%%%")], &body)
            .await,
        "not base64",
    );

    // Missing pieces are SNAP's "Invalid Mandatory Field {…}".
    for (missing, keep) in [
        ("X-SIGNATURE", vec![headers[0], headers[1]]),
        ("X-TIMESTAMP", vec![headers[1], headers[2]]),
        ("X-CLIENT-KEY", vec![headers[0], headers[2]]),
    ] {
        let (status, b) = snap.request(&keep, &body).await;
        assert_eq!(status, 400, "{missing}: {b}");
        assert_eq!(b["responseCode"], "4007302", "{missing}: {b}");
        assert_eq!(
            b["responseMessage"],
            format!("Invalid Mandatory Field {{{missing}}}")
        );
    }
    let (status, b) = snap
        .request(&headers, &json!({"grantType": "password"}))
        .await;
    assert_eq!(
        (status, b["responseCode"].as_str()),
        (400, Some("4007301")),
        "{b}"
    );
    let (status, b) = snap
        .request(
            &[headers[0], headers[1], ("X-SIGNATURE", &signature)],
            &json!([]),
        )
        .await;
    assert_eq!(
        (status, b["responseCode"].as_str()),
        (400, Some("4007300")),
        "{b}"
    );
    let res = snap.app.send(Method::GET, PATH, &[], None).await;
    assert_eq!(res.status(), 405);
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["responseCode"], "4057300");
}

#[tokio::test]
async fn client_key_add_registers_a_pem_public_key() {
    let dir = migrated().await;
    ok(dir.path(), &["client", "add", CLIENT], None).await;
    let pem = new_key()
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let file = dir.path().join("client.pub.pem");
    std::fs::write(&file, pem).unwrap();
    let path = file.to_str().unwrap();
    let out = ok(
        dir.path(),
        &[
            "client",
            "key",
            "add",
            CLIENT,
            "--public-key",
            path,
            "--kid",
            "k1",
        ],
        None,
    )
    .await;
    assert_eq!(out.trim(), "kid: k1");
    let list = ok(dir.path(), &["client", "key", "list", CLIENT], None).await;
    assert!(list.lines().nth(1).unwrap().starts_with("k1 "), "{list}");
    assert!(list.contains("RS256"), "{list}");

    let e = fails(
        dir.path(),
        &[
            "client",
            "key",
            "add",
            CLIENT,
            "--public-key",
            path,
            "--kid",
            "k1",
        ],
        None,
    )
    .await;
    assert!(e.contains("already exists"), "{e}");
    let e = fails(
        dir.path(),
        &["client", "key", "add", "nosuch", "--public-key", path],
        None,
    )
    .await;
    assert!(e.contains("no client nosuch"), "{e}");
    std::fs::write(&file, "not a key").unwrap();
    let e = fails(
        dir.path(),
        &["client", "key", "add", CLIENT, "--public-key", path],
        None,
    )
    .await;
    assert!(e.contains("not an RSA public key"), "{e}");
    ok(dir.path(), &["client", "key", "remove", CLIENT, "k1"], None).await;
    // Removing the client removes its keys: a new client of that id starts with none.
    std::fs::write(
        &file,
        new_key()
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    ok(
        dir.path(),
        &[
            "client",
            "key",
            "add",
            CLIENT,
            "--public-key",
            path,
            "--kid",
            "k2",
        ],
        None,
    )
    .await;
    ok(dir.path(), &["client", "remove", CLIENT], None).await;
    ok(dir.path(), &["client", "add", CLIENT], None).await;
    let list = ok(dir.path(), &["client", "key", "list", CLIENT], None).await;
    assert_eq!(list.lines().count(), 1, "only the header line: {list}");
    let e = fails(dir.path(), &["client", "key", "remove", CLIENT, "k1"], None).await;
    assert!(e.contains("no key k1"), "{e}");
}

#[tokio::test]
async fn client_key_add_seals_an_hmac_secret_and_never_shows_it() {
    let dir = migrated().await;
    ok(dir.path(), &["client", "add", CLIENT], None).await;
    let secret = "s3cr3t-shared-with-the-partner-7f2a9c41";
    let file = dir.path().join("client.secret");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let path = file.to_str().unwrap();
    let pem_file = dir.path().join("client.pub.pem");
    std::fs::write(
        &pem_file,
        new_key()
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let pem = pem_file.to_str().unwrap();

    let out = ok(
        dir.path(),
        &[
            "client",
            "key",
            "add",
            CLIENT,
            "--kid",
            "h1",
            "--hmac-secret-file",
            path,
        ],
        None,
    )
    .await;
    assert_eq!(out.trim(), "kid: h1");
    // Without --kid, a random one: nothing derived from the secret.
    let out = ok(
        dir.path(),
        &["client", "key", "add", CLIENT, "--hmac-secret-file", path],
        None,
    )
    .await;
    let kid = out.trim().strip_prefix("kid: ").unwrap().to_owned();
    assert_eq!(kid.len(), 16, "{out}");
    assert!(!out.contains(secret));

    let list = ok(dir.path(), &["client", "key", "list", CLIENT], None).await;
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(
        list.lines().all(|l| !l.contains("RS256")) && list.matches("HMAC").count() == 2,
        "{list}"
    );
    assert!(list.contains("h1 ") && list.contains(&kid), "{list}");
    assert!(
        !list.contains(secret) && !list.contains(&hex::encode(secret)),
        "{list}"
    );

    // Sealed at rest: not in the database file or its log, in any spelling.
    let mut db = std::fs::read(dir.path().join("khoa.db")).unwrap();
    db.extend(std::fs::read(dir.path().join("khoa.db-wal")).unwrap_or_default());
    for needle in [secret.to_owned(), hex::encode(secret)] {
        assert!(
            !db.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} is in the database"
        );
    }

    // Exactly one of the two options: a usage error either way, naming them.
    let both = run(
        khoa_on(dir.path()),
        &[
            "client",
            "key",
            "add",
            CLIENT,
            "--public-key",
            pem,
            "--hmac-secret-file",
            path,
        ],
        None,
    )
    .await;
    assert_eq!(both.status.code(), Some(2), "{}", both.stderr);
    assert!(
        both.stderr.contains("cannot be used with"),
        "{}",
        both.stderr
    );
    let neither = run(
        khoa_on(dir.path()),
        &["client", "key", "add", CLIENT, "--kid", "h3"],
        None,
    )
    .await;
    assert_eq!(neither.status.code(), Some(2), "{}", neither.stderr);
    assert!(
        neither.stderr.contains("--public-key") && neither.stderr.contains("--hmac-secret-file"),
        "{}",
        neither.stderr
    );
    assert!(both.stdout.is_empty() && neither.stdout.is_empty());
    assert!(!both.stderr.contains(secret));

    // A short secret, a taken kid, an unknown client: refused, the secret never echoed.
    std::fs::write(&file, "short\n").unwrap();
    let e = fails(
        dir.path(),
        &["client", "key", "add", CLIENT, "--hmac-secret-file", path],
        None,
    )
    .await;
    assert!(e.contains("at least 32"), "{e}");
    assert!(!e.contains("short"), "{e}");
    std::fs::write(&file, secret).unwrap();
    let e = fails(
        dir.path(),
        &[
            "client",
            "key",
            "add",
            CLIENT,
            "--kid",
            "h1",
            "--hmac-secret-file",
            path,
        ],
        None,
    )
    .await;
    assert!(
        e.contains("key h1 of client") && e.contains("already exists"),
        "{e}"
    );
    let e = fails(
        dir.path(),
        &["client", "key", "add", "nosuch", "--hmac-secret-file", path],
        None,
    )
    .await;
    assert!(e.contains("no client nosuch") && !e.contains(secret), "{e}");
    ok(dir.path(), &["client", "key", "remove", CLIENT, "h1"], None).await;
    let list = ok(dir.path(), &["client", "key", "list", CLIENT], None).await;
    assert_eq!(list.lines().count(), 2, "{list}");
}
