//! Writes the seeds that cannot be typed by hand into `corpus/`: JWTs the fuzz ring signed,
//! the tokens the fuzz engine issued, sealed envelopes. Deterministic: rerunning it rewrites
//! the same files.

use khoa_core::envelope::seal_hex;
use khoa_core::keys::{ACCESS_TOKEN_TYP, AccessTokenClaims};
use khoa_fuzz::{AUDIENCE, ENVELOPE_KEY, ISSUER, NOW, fixture, ring};
use std::fs;
use std::path::Path;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("corpus directory");
    fs::write(dir.join(name), bytes).expect("seed written");
}

fn main() {
    let claims = claims();
    let jwt = ring().sign(ACCESS_TOKEN_TYP, &claims, NOW).expect("signed");
    write("jwt_verify", "seed-signed", jwt.as_bytes());
    write(
        "bearer",
        "seed-header-jwt",
        format!("Bearer {jwt}").as_bytes(),
    );
    for (i, token) in fixture().tokens.iter().enumerate() {
        write("bearer", &format!("seed-issued-{i}"), token.as_bytes());
        write("jwt_verify", &format!("seed-issued-{i}"), token.as_bytes());
    }
    let payloads: [&[u8]; 3] = [
        br#"{"refresh_token":"5f1b0c0e7d2a4c8e9b3f6a1d2c4e8f00"}"#,
        br#"{"username":"partner-user","password":"Partner@123"}"#,
        b"not json",
    ];
    for (i, p) in payloads.iter().enumerate() {
        let hex = seal_hex(&ENVELOPE_KEY, &[i as u8; 16], p);
        write("envelope", &format!("seed-sealed-{i}"), hex.as_bytes());
        let body = format!(r#"{{"data":"{hex}"}}"#);
        write(
            "dialect_json",
            &format!("seed-partner-{i}"),
            body.as_bytes(),
        );
    }
}

/// RFC 9068 claims, as khoa mints them.
fn claims() -> AccessTokenClaims {
    AccessTokenClaims {
        iss: ISSUER.to_owned(),
        sub: "fuzz-subject".to_owned(),
        aud: AUDIENCE.to_owned(),
        exp: NOW + 3600,
        iat: NOW,
        jti: "fuzz-jti".to_owned(),
        client_id: "jwt".to_owned(),
        scope: "read write".to_owned(),
        sid: Some("fuzz-session".to_owned()),
        otp_sha256: None,
    }
}
