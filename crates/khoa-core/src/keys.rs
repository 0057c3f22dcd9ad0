//! Signing keys and RFC 9068 JWT access tokens.
//!
//! khoa signs with Ed25519 (`EdDSA`): signing and verification are an order of magnitude
//! cheaper than ECDSA P-256 in pure Rust, which matters for the throughput targets.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
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

/// OpenID Connect Core §5.3 / RFC 7519: the `typ` of an ID token.
pub const ID_TOKEN_TYP: &str = "JWT";

/// The claims of an OpenID Connect ID token (Core §2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    /// The client the token is for (Core §2: `aud` contains the `client_id`).
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
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

/// The keys one node uses: the current signer and every published verifier, parsed once.
///
/// JWS compact serialization (RFC 7515 §7.1) is written here rather than delegated to
/// `jsonwebtoken`: that crate rebuilds the Ed25519 key from its DER form on every `encode`
/// (a scalar multiplication, as expensive as the signature itself) and decompresses the public
/// key on every `decode`, which the benchmarks measured at half the signing and verifying
/// throughput. What is left is small and fully tested: one algorithm (`EdDSA`), keys chosen by
/// `kid` from our own set, `crit` refused, strict signature verification.
pub struct KeyRing {
    signer: Option<(String, ed25519_dalek::SigningKey)>,
    verifiers: HashMap<String, ed25519_dalek::VerifyingKey>,
    jwks: String,
    kids: Vec<(String, KeyStatus)>,
    /// Tokens this ring already verified (by SHA-256 of the token): a resource server sees the
    /// same token many times, and a hit skips the signature check. Bounded; emptied with the
    /// ring on every key reload.
    verified: Mutex<HashMap<[u8; 32], AccessTokenClaims>>,
}

/// Most tokens remembered as verified before the memory starts over.
const VERIFIED_CACHE_MAX: usize = 10_000;

/// The protected header of a JWS, as far as khoa reads it.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    /// RFC 7515 §4.1.11: extensions we would have to understand; we understand none.
    crit: Option<serde_json::Value>,
}

fn decode_part(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part).ok()
}

fn header_of(token: &str) -> Option<JoseHeader> {
    let first = token.split('.').next()?;
    serde_json::from_slice(&decode_part(first)?).ok()
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
            let bad = |what: &str| EngineError::Internal(format!("signing key {}: {what}", r.kid));
            let jwk: serde_json::Value =
                serde_json::from_str(&r.public_jwk).map_err(|_| bad("bad JWK"))?;
            let public: [u8; 32] = jwk["x"]
                .as_str()
                .and_then(decode_part)
                .and_then(|x| x.try_into().ok())
                .ok_or_else(|| bad("bad JWK x"))?;
            let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public)
                .map_err(|_| bad("bad public key"))?;
            verifiers.insert(r.kid.clone(), verifying);
            published.push(jwk);
            if r.status == KeyStatus::Current {
                let seed = master
                    .open(&r.private_sealed, r.kid.as_bytes())
                    .map_err(|e| bad(&e.to_string()))?;
                let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| bad("bad length"))?;
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                if key.verifying_key() != verifying {
                    return Err(bad("private and public halves do not match"));
                }
                signer = Some((r.kid.clone(), key));
            }
        }
        let jwks = serde_json::json!({ "keys": published }).to_string();
        Ok(KeyRing {
            signer,
            verifiers,
            jwks,
            kids,
            verified: Mutex::new(HashMap::new()),
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

    /// A compact JWS of `claims` with header `{"alg":"EdDSA","typ":typ,"kid":…}`.
    pub fn sign(&self, typ: &str, claims: &impl Serialize) -> Result<String, EngineError> {
        let (kid, key) = self
            .signer
            .as_ref()
            .ok_or_else(|| EngineError::Internal("no current signing key".into()))?;
        let header = serde_json::json!({ "alg": ALG, "typ": typ, "kid": kid });
        let header =
            serde_json::to_vec(&header).map_err(|e| EngineError::Internal(e.to_string()))?;
        let payload =
            serde_json::to_vec(claims).map_err(|e| EngineError::Internal(e.to_string()))?;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = ed25519_dalek::Signer::sign(key, token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        Ok(token)
    }

    /// Whether `token`'s header names a key this ring does not know (a key another node may
    /// have rotated in since this ring was loaded).
    pub fn kid_unknown(&self, token: &str) -> bool {
        header_of(token)
            .and_then(|h| h.kid)
            .is_some_and(|kid| !self.verifiers.contains_key(&kid))
    }

    /// Verifies signature, `typ`, `iss` and `aud`. Expiry is checked by the caller against the
    /// injected clock, not here against the system clock.
    pub fn verify(&self, token: &str, issuer: &str, audience: &str) -> Option<AccessTokenClaims> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self
            .verified
            .lock()
            .expect("verified cache poisoned")
            .get(&digest)
            .cloned();
        let claims = match cached {
            Some(c) => c,
            None => {
                let c = self.verify_signature(token)?;
                let mut cache = self.verified.lock().expect("verified cache poisoned");
                if cache.len() >= VERIFIED_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(digest, c.clone());
                c
            }
        };
        (claims.iss == issuer && claims.aud == audience).then_some(claims)
    }

    /// The full check behind [`KeyRing::verify`] without its memory of verified tokens (and
    /// without `iss`/`aud`): what a token costs the first time it is seen.
    pub fn verify_signature(&self, token: &str) -> Option<AccessTokenClaims> {
        let mut parts = token.split('.');
        let (header_b64, payload_b64, signature_b64) =
            (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: JoseHeader = serde_json::from_slice(&decode_part(header_b64)?).ok()?;
        if header.alg != ALG
            || header.typ.as_deref() != Some(ACCESS_TOKEN_TYP)
            || header.crit.is_some()
        {
            return None;
        }
        let key = self.verifiers.get(header.kid.as_deref()?)?;
        let signature = ed25519_dalek::Signature::from_slice(&decode_part(signature_b64)?).ok()?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        // Strict: refuses non-canonical signatures and small-order keys (no malleability).
        key.verify_strict(signing_input.as_bytes(), &signature)
            .ok()?;
        serde_json::from_slice(&decode_part(payload_b64)?).ok()
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
        let header = header_of(&jwt).unwrap();
        assert_eq!(header.alg, "EdDSA");
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

    /// A token with the given header and our claims, signed by `ring`'s key over exactly what
    /// it carries — so that only the header decides.
    fn forge(ring: &KeyRing, header: serde_json::Value) -> String {
        let (_, key) = ring.signer.as_ref().unwrap();
        let mut t = URL_SAFE_NO_PAD.encode(header.to_string());
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap()));
        let sig = ed25519_dalek::Signer::sign(key, t.as_bytes());
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        t
    }

    #[test]
    fn only_eddsa_access_tokens_without_crit_and_with_a_known_kid_pass() {
        let master = MasterKey::generate(&OsRandom);
        let rec = generate_key(&OsRandom, &master, 1);
        let ring = KeyRing::load(std::slice::from_ref(&rec), &master).unwrap();
        let ok = |h| {
            ring.verify(&forge(&ring, h), "https://khoa.test", "api")
                .is_some()
        };
        let kid = rec.kid.as_str();
        assert!(ok(
            serde_json::json!({"alg":"EdDSA","typ":"at+jwt","kid":kid})
        ));
        assert!(!ok(
            serde_json::json!({"alg":"none","typ":"at+jwt","kid":kid})
        ));
        assert!(!ok(
            serde_json::json!({"alg":"HS256","typ":"at+jwt","kid":kid})
        ));
        assert!(!ok(
            serde_json::json!({"alg":"EdDSA","typ":"JWT","kid":kid})
        ));
        assert!(!ok(
            serde_json::json!({"alg":"EdDSA","typ":"rt+jwt","kid":kid})
        ));
        assert!(!ok(serde_json::json!({"alg":"EdDSA","typ":"at+jwt"})));
        assert!(!ok(
            serde_json::json!({"alg":"EdDSA","typ":"at+jwt","kid":"other"})
        ));
        assert!(!ok(
            serde_json::json!({"alg":"EdDSA","typ":"at+jwt","kid":kid,"crit":["exp"]})
        ));
    }

    #[test]
    fn malformed_compact_serializations_are_refused() {
        let master = MasterKey::generate(&OsRandom);
        let ring = KeyRing::load(&[generate_key(&OsRandom, &master, 1)], &master).unwrap();
        let jwt = ring.sign(ACCESS_TOKEN_TYP, &claims()).unwrap();
        let v = |t: &str| ring.verify(t, "https://khoa.test", "api").is_some();
        assert!(v(&jwt));
        assert!(!v(&format!("{jwt}.extra")));
        assert!(!v(&format!("{jwt}=")), "padding is not base64url");
        let (rest, sig) = jwt.rsplit_once('.').unwrap();
        assert!(!v(rest), "no signature");
        assert!(
            !v(&format!("{rest}.{}", &sig[..sig.len() - 4])),
            "short signature"
        );
        let mut flipped = sig.as_bytes().to_vec();
        flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
        assert!(!v(&format!(
            "{rest}.{}",
            String::from_utf8(flipped).unwrap()
        )));
        // Verified once, remembered: the same token passes again, a different one is checked.
        assert!(v(&jwt));
    }
}
