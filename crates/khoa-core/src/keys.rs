//! Signing keys and RFC 9068 JWT access tokens.
//!
//! khoa signs with Ed25519 (`EdDSA`): signing and verification are an order of magnitude
//! cheaper than ECDSA P-256 in pure Rust, which matters for the throughput targets.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use zeroize::Zeroizing;

use crate::clock::Random;
use crate::error::EngineError;
use crate::master_key::MasterKey;
use crate::model::UnixTime;
use crate::store::{KeyStatus, SigningKeyRecord};

pub const ALG: &str = "EdDSA";
/// RFC 9068 §2.1: the `typ` header of a JWT access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The `typ` of khoa's JWT-shaped refresh tokens, so that one can never pass for an access
/// token.
pub const REFRESH_TOKEN_TYP: &str = "rt+jwt";

/// A fresh Ed25519 key, its private half sealed under the master key, its `kid` the RFC 7638
/// thumbprint of the public JWK.
pub fn generate_key(random: &dyn Random, master: &MasterKey, now: UnixTime) -> SigningKeyRecord {
    let mut seed = Zeroizing::new([0u8; 32]);
    random.fill(&mut seed[..]);
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
    // RFC 7638 §3.2: members in lexicographic order, no whitespace.
    let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));
    let jwk = serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": ALG, "use": "sig",
    });
    SigningKeyRecord {
        private_sealed: master.seal(random, &seed[..], kid.as_bytes()),
        kid,
        alg: ALG.to_owned(),
        public_jwk: jwk.to_string(),
        created_at: now,
        status: KeyStatus::Current,
    }
}

/// The claims of a khoa JWT access token (RFC 9068 §2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    /// The refresh-token family (session) this token came from, so that revoking the family
    /// also stops its JWTs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// SHA-256 (hex) of the `otp_token` bound to this token, when the policy issues one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otp_sha256: Option<String>,
}

/// The claims of a JWT-shaped refresh token (seed 002). Its signature lets the client read
/// `exp`; khoa itself only ever looks it up by hash, like any refresh token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenClaims {
    pub iss: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub sid: String,
}

/// The keys one node uses: the current signer and every published verifier.
pub struct KeyRing {
    signer: Option<(String, EncodingKey)>,
    verifiers: HashMap<String, DecodingKey>,
    jwks: String,
    kids: Vec<(String, KeyStatus)>,
}

impl KeyRing {
    /// Builds the ring from stored records; fails if a sealed key cannot be opened (wrong master
    /// key), which must stop start-up rather than silently mint with a new key.
    pub fn load(records: &[SigningKeyRecord], master: &MasterKey) -> Result<Self, EngineError> {
        let mut signer = None;
        let mut verifiers = HashMap::new();
        let mut published = Vec::new();
        let mut kids = Vec::new();
        for r in records {
            kids.push((r.kid.clone(), r.status));
            if r.status == KeyStatus::Retired {
                continue;
            }
            if r.alg != ALG {
                return Err(EngineError::Internal(format!(
                    "key {} has unsupported alg {}",
                    r.kid, r.alg
                )));
            }
            let jwk: serde_json::Value = serde_json::from_str(&r.public_jwk)
                .map_err(|e| EngineError::Internal(format!("key {}: bad JWK: {e}", r.kid)))?;
            let x = jwk["x"].as_str().unwrap_or_default();
            let public = URL_SAFE_NO_PAD
                .decode(x)
                .map_err(|_| EngineError::Internal(format!("key {}: bad JWK x", r.kid)))?;
            verifiers.insert(r.kid.clone(), DecodingKey::from_ed_der(&public));
            published.push(jwk);
            if r.status == KeyStatus::Current {
                let seed = master
                    .open(&r.private_sealed, r.kid.as_bytes())
                    .map_err(|e| EngineError::Internal(format!("signing key {}: {e}", r.kid)))?;
                let seed: [u8; 32] = seed
                    .as_slice()
                    .try_into()
                    .map_err(|_| EngineError::Internal(format!("key {}: bad length", r.kid)))?;
                let der = ed25519_dalek::SigningKey::from_bytes(&seed)
                    .to_pkcs8_der()
                    .map_err(|e| EngineError::Internal(format!("key {}: {e}", r.kid)))?;
                signer = Some((r.kid.clone(), EncodingKey::from_ed_der(der.as_bytes())));
            }
        }
        let jwks = serde_json::json!({ "keys": published }).to_string();
        Ok(KeyRing {
            signer,
            verifiers,
            jwks,
            kids,
        })
    }

    /// The JWKS document (RFC 7517 §5) of every published key.
    pub fn jwks_json(&self) -> &str {
        &self.jwks
    }

    pub fn current_kid(&self) -> Option<&str> {
        self.signer.as_ref().map(|(k, _)| k.as_str())
    }

    pub fn kids(&self) -> &[(String, KeyStatus)] {
        &self.kids
    }

    pub fn sign(&self, typ: &str, claims: &impl Serialize) -> Result<String, EngineError> {
        let (kid, key) = self
            .signer
            .as_ref()
            .ok_or_else(|| EngineError::Internal("no current signing key".into()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(typ.to_owned());
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, key)
            .map_err(|e| EngineError::Internal(format!("signing failed: {e}")))
    }

    /// Whether `token`'s header names a key this ring does not know (a key another node may
    /// have rotated in since this ring was loaded).
    pub fn kid_unknown(&self, token: &str) -> bool {
        jsonwebtoken::decode_header(token)
            .ok()
            .and_then(|h| h.kid)
            .is_some_and(|kid| !self.verifiers.contains_key(&kid))
    }

    /// Verifies signature, `typ`, `iss` and `aud`. Expiry is checked by the caller against the
    /// injected clock, not here against the system clock.
    pub fn verify(&self, token: &str, issuer: &str, audience: &str) -> Option<AccessTokenClaims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return None;
        }
        let key = self.verifiers.get(header.kid.as_deref()?)?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.validate_exp = false;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.set_issuer(&[issuer]);
        v.set_audience(&[audience]);
        jsonwebtoken::decode::<AccessTokenClaims>(token, key, &v)
            .ok()
            .map(|d| d.claims)
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current_kid())
            .field("kids", &self.kids)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OsRandom;

    fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "https://khoa.test".into(),
            sub: "usr_1".into(),
            aud: "api".into(),
            exp: 2_000_000_000,
            iat: 1_000_000_000,
            jti: "j1".into(),
            client_id: "c1".into(),
            scope: "a b".into(),
            sid: None,
            otp_sha256: None,
        }
    }

    #[test]
    fn a_signed_token_verifies_and_carries_its_claims() {
        let master = MasterKey::generate(&OsRandom);
        let rec = generate_key(&OsRandom, &master, 1);
        let ring = KeyRing::load(std::slice::from_ref(&rec), &master).unwrap();
        let jwt = ring.sign(ACCESS_TOKEN_TYP, &claims()).unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(rec.kid.as_str()));
        assert_eq!(
            ring.verify(&jwt, "https://khoa.test", "api"),
            Some(claims())
        );
        assert_eq!(ring.verify(&jwt, "https://other", "api"), None);
        assert_eq!(ring.verify(&jwt, "https://khoa.test", "other"), None);
    }

    #[test]
    fn a_token_from_a_foreign_key_is_refused() {
        let master = MasterKey::generate(&OsRandom);
        let ours = KeyRing::load(&[generate_key(&OsRandom, &master, 1)], &master).unwrap();
        let theirs = KeyRing::load(&[generate_key(&OsRandom, &master, 1)], &master).unwrap();
        let jwt = theirs.sign(ACCESS_TOKEN_TYP, &claims()).unwrap();
        assert_eq!(ours.verify(&jwt, "https://khoa.test", "api"), None);
        // Tampering with the payload breaks the signature.
        let ours_jwt = ours.sign(ACCESS_TOKEN_TYP, &claims()).unwrap();
        let mut parts: Vec<&str> = ours_jwt.split('.').collect();
        let evil = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#);
        parts[1] = &evil;
        assert_eq!(
            ours.verify(&parts.join("."), "https://khoa.test", "api"),
            None
        );
    }

    #[test]
    fn jwks_publishes_public_halves_only_and_private_key_is_sealed() {
        let master = MasterKey::generate(&OsRandom);
        let rec = generate_key(&OsRandom, &master, 1);
        let ring = KeyRing::load(std::slice::from_ref(&rec), &master).unwrap();
        let jwks: serde_json::Value = serde_json::from_str(ring.jwks_json()).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], rec.kid);
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
        assert!(jwks["keys"][0].get("d").is_none());
        let wrong = MasterKey::generate(&OsRandom);
        assert!(KeyRing::load(&[rec], &wrong).is_err());
    }
}
