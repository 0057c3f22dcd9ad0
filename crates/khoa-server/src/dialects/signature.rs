//! Request signatures, the named transforms of `endpoints.NAME.signature` (docs/dialects.md):
//! the signing time within the window, the signature verified with a key registered for the
//! client (`khoa client key add`: an RSA public key, or an HMAC secret kept sealed), and each
//! signature accepted once, on every node.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use khoa_core::client_key::KeyAlg;
use khoa_dialect::def::SignatureKind;
use khoa_dialect::load::SignatureSpec;
use khoa_dialect::read::Signed;
use khoa_dialect::{Kind, Refused};
use sha2::Digest as _;

use super::generic::from_engine;
use crate::state::AppState;

/// Checks a signed request: fresh, made with a key registered for `client`, and never seen
/// before (recorded until it would be stale anyway, on every node).
pub async fn verify(
    state: &AppState,
    spec: &SignatureSpec,
    signed: &Signed,
    client: &str,
) -> Result<(), Refused> {
    let now = state.engine.now();
    let window = i64::try_from(spec.window_secs).unwrap_or(i64::MAX);
    if (now - signed.timestamp).abs() > window {
        return Err(Refused::new(
            Kind::StaleSignature,
            "the signing time is outside the accepted window",
        ));
    }
    // Only keys of the kind's own algorithm: an RSA key never checks an HMAC, nor a secret
    // an RSA signature.
    let alg = match spec.kind {
        SignatureKind::RsaSha256 => KeyAlg::Rs256,
        SignatureKind::HmacSha256 | SignatureKind::HmacSha512 => KeyAlg::Hmac,
    };
    let keys = state
        .engine
        .tokens()
        .client_keys()
        .verifying(client, alg)
        .await
        .map_err(from_engine)?;
    let verified = keys.iter().any(|k| match spec.kind {
        SignatureKind::RsaSha256 => rsa_sha256_verifies(k, signed),
        SignatureKind::HmacSha256 => hmac_verifies::<Hmac<sha2::Sha256>>(k, signed),
        SignatureKind::HmacSha512 => hmac_verifies::<Hmac<sha2::Sha512>>(k, signed),
    });
    if !verified {
        return Err(Refused::new(
            Kind::BadSignature,
            "the signature does not verify",
        ));
    }
    let digest = hex::encode(sha2::Sha256::digest(&signed.signature));
    let first = state
        .engine
        .tokens()
        .client_keys()
        .use_signature(&digest, signed.timestamp + window, now)
        .await
        .map_err(from_engine)?;
    if !first {
        return Err(Refused::new(
            Kind::ReplayedSignature,
            "the signature was already used",
        ));
    }
    Ok(())
}

/// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2) over the payload, with a DER SPKI key.
fn rsa_sha256_verifies(spki: &[u8], signed: &Signed) -> bool {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    let Ok(key) = rsa::RsaPublicKey::from_public_key_der(spki) else {
        return false;
    };
    let Ok(signature) = rsa::pkcs1v15::Signature::try_from(signed.signature.as_slice()) else {
        return false;
    };
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key)
        .verify(signed.payload.as_bytes(), &signature)
        .is_ok()
}

/// HMAC (RFC 2104) over the payload with a shared secret; the tag compared in constant time
/// (`verify_slice`), and only at the hash's full length.
fn hmac_verifies<M: Mac + KeyInit>(secret: &[u8], signed: &Signed) -> bool {
    let Ok(mut mac) = <M as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(signed.payload.as_bytes());
    mac.verify_slice(&signed.signature).is_ok()
}
