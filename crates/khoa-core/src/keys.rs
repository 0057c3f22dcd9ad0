//! Signing keys and RFC 9068 JWT access tokens.
//!
//! khoa signs with Ed25519 (`EdDSA`): signing and verification are an order of magnitude
//! cheaper than ECDSA P-256 in pure Rust, which matters for the throughput targets.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use zeroize::Zeroizing;

use crate::clock::Random;
use crate::error::EngineError;
use crate::master_key::MasterKey;
use crate::model::UnixTime;
use crate::store::{KeyState, SigningKeyRecord};

pub const ALG: &str = "EdDSA";
/// RFC 9068 §2.1: the `typ` header of a JWT access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The `typ` of khoa's JWT-shaped refresh tokens, so that one can never pass for an access
/// token.
pub const REFRESH_TOKEN_TYP: &str = "rt+jwt";

/// A fresh Ed25519 key activating at `activates_at`, its private half sealed under the master
/// key, its `kid` the RFC 7638 thumbprint of the public JWK.
pub fn generate_key(
    random: &dyn Random,
    master: &MasterKey,
    now: UnixTime,
    activates_at: UnixTime,
) -> SigningKeyRecord {
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
        activates_at,
        retires_at: None,
    }
}

/// Which of `keys` (in activation order) signs at `now`: the published one activated last,
/// the later-listed one among keys activating in the same second.
fn signer_index<'a>(
    keys: impl DoubleEndedIterator<Item = (UnixTime, Option<UnixTime>)> + ExactSizeIterator + 'a,
    now: UnixTime,
) -> Option<usize> {
    let n = keys.len();
    keys.rev()
        .position(|(activates_at, retires_at)| {
            activates_at <= now && retires_at.is_none_or(|r| now < r)
        })
        .map(|from_end| n - 1 - from_end)
}

/// The state of each of `records` (in activation order) at `now`.
pub fn key_states(records: &[SigningKeyRecord], now: UnixTime) -> Vec<KeyState> {
    let signer = signer_index(records.iter().map(|r| (r.activates_at, r.retires_at)), now);
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if !r.published_at(now) {
                KeyState::Retired
            } else if Some(i) == signer {
                KeyState::Current
            } else if r.activates_at > now {
                KeyState::Next
            } else {
                KeyState::Previous
            }
        })
        .collect()
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

/// The keys one node uses: every published key with its schedule, parsed once.
///
/// Which key signs and which keys are published follow from the keys' `activates_at` and
/// `retires_at` and the `now` each call is given, so a ring loaded before a scheduled
/// switch (or retirement) makes it on time, on every node at once, without a reload.
///
/// JWS compact serialization (RFC 7515 §7.1) is written here rather than delegated to
/// `jsonwebtoken`: that crate rebuilds the Ed25519 key from its DER form on every `encode`
/// (a scalar multiplication, as expensive as the signature itself) and decompresses the public
/// key on every `decode`, which the benchmarks measured at half the signing and verifying
/// throughput. What is left is small and fully tested: one algorithm (`EdDSA`), keys chosen by
/// `kid` from our own set, `crit` refused, strict signature verification.
pub struct KeyRing {
    /// Keys not yet retired when the ring was loaded, in activation order.
    keys: Vec<RingKey>,
    /// Keys already retired when the ring was loaded: known (no reload for them), refused.
    retired: HashSet<String>,
    /// The distinct `retires_at` of `keys`, ascending: the instants the JWKS changes.
    retirements: Vec<UnixTime>,
    /// `jwks[i]`: the document once the first `i` retirements have passed.
    jwks: Vec<Jwks>,
    /// Tokens this ring already verified (by SHA-256 of the token), with the index of their
    /// key: a resource server sees the same token many times, and a hit skips the signature
    /// check (not the retirement check). Bounded; emptied with the ring on every key reload.
    verified: Mutex<HashMap<[u8; 32], (AccessTokenClaims, usize)>>,
}

struct RingKey {
    kid: String,
    activates_at: UnixTime,
    retires_at: Option<UnixTime>,
    verifying: ed25519_dalek::VerifyingKey,
    signing: ed25519_dalek::SigningKey,
    /// The base64url JWS header of each `typ` khoa signs, encoded once per key rather than per
    /// token (building, serialising and encoding it was a third of a JWT's cost beside the
    /// signature itself).
    headers: [(&'static str, String); 3],
}

/// The base64url of `{"alg":"EdDSA","typ":typ,"kid":kid}`.
fn encoded_header(kid: &str, typ: &str) -> Result<String, EngineError> {
    let header = serde_json::json!({ "alg": ALG, "typ": typ, "kid": kid });
    let header = serde_json::to_vec(&header)
        .map_err(|e| EngineError::internal_caused("encoding a JWT header", e))?;
    Ok(URL_SAFE_NO_PAD.encode(header))
}

impl RingKey {
    fn published_at(&self, now: UnixTime) -> bool {
        self.retires_at.is_none_or(|r| now < r)
    }
}

/// A JWKS document (RFC 7517 §5) and its strong entity tag (RFC 9110 §8.8.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jwks {
    pub body: String,
    /// Quoted, as sent in `ETag`: a digest of `body`, so every node serving the same key set
    /// answers with the same tag and a cache may revalidate against any of them.
    pub etag: String,
}

impl Jwks {
    fn new(keys: Vec<&serde_json::Value>) -> Self {
        let body = serde_json::json!({ "keys": keys }).to_string();
        let digest = Sha256::digest(body.as_bytes());
        let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..16]));
        Jwks { body, etag }
    }
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
    /// Builds the ring from stored records as of `now`; fails if a sealed key cannot be opened
    /// (wrong master key), which must stop start-up rather than silently mint with a new key.
    pub fn load(
        records: &[SigningKeyRecord],
        master: &MasterKey,
        now: UnixTime,
    ) -> Result<Self, EngineError> {
        let mut records: Vec<&SigningKeyRecord> = records.iter().collect();
        // Stable: keys activating in the same second keep the store's insertion order.
        records.sort_by_key(|r| r.activates_at);
        let mut keys = Vec::new();
        let mut jwks_members = Vec::new();
        let mut retired = HashSet::new();
        for r in records {
            if !r.published_at(now) {
                retired.insert(r.kid.clone());
                continue;
            }
            if r.alg != ALG {
                return Err(EngineError::internal(format!(
                    "key {} has unsupported alg {}",
                    r.kid, r.alg
                )));
            }
            let bad = |what: &str| EngineError::internal(format!("signing key {}: {what}", r.kid));
            let jwk: serde_json::Value =
                serde_json::from_str(&r.public_jwk).map_err(|_| bad("bad JWK"))?;
            let public: [u8; 32] = jwk["x"]
                .as_str()
                .and_then(decode_part)
                .and_then(|x| x.try_into().ok())
                .ok_or_else(|| bad("bad JWK x"))?;
            let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public)
                .map_err(|_| bad("bad public key"))?;
            // Opened even while the key is only `next` or already `previous`: the ring must
            // sign with it the moment its turn comes, without a reload.
            let seed = master
                .open(&r.private_sealed, r.kid.as_bytes())
                .map_err(|e| bad(&e.to_string()))?;
            let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| bad("bad length"))?;
            let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
            if signing.verifying_key() != verifying {
                return Err(bad("private and public halves do not match"));
            }
            let headers = [ACCESS_TOKEN_TYP, REFRESH_TOKEN_TYP, ID_TOKEN_TYP]
                .map(|typ| encoded_header(&r.kid, typ).map(|h| (typ, h)));
            let [access, refresh, id] = headers;
            keys.push(RingKey {
                kid: r.kid.clone(),
                activates_at: r.activates_at,
                retires_at: r.retires_at,
                verifying,
                signing,
                headers: [access?, refresh?, id?],
            });
            jwks_members.push(jwk);
        }
        let mut retirements: Vec<UnixTime> = keys.iter().filter_map(|k| k.retires_at).collect();
        retirements.sort_unstable();
        retirements.dedup();
        // RFC 7517 §5: the set holds exactly the keys published at that instant: the next key
        // ahead of its activation (so that caches know it before it signs), the current one,
        // and previous ones until their last token has expired.
        let jwks = std::iter::once(None)
            .chain(retirements.iter().copied().map(Some))
            .map(|passed| {
                Jwks::new(
                    keys.iter()
                        .zip(&jwks_members)
                        .filter(|(k, _)| passed.is_none_or(|t| k.published_at(t)))
                        .map(|(_, jwk)| jwk)
                        .collect(),
                )
            })
            .collect();
        Ok(KeyRing {
            keys,
            retired,
            retirements,
            jwks,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The JWKS document (RFC 7517 §5) of the keys published at `now`.
    pub fn jwks(&self, now: UnixTime) -> &Jwks {
        let passed = self.retirements.iter().take_while(|t| **t <= now).count();
        &self.jwks[passed]
    }

    fn signer(&self, now: UnixTime) -> Option<&RingKey> {
        signer_index(
            self.keys.iter().map(|k| (k.activates_at, k.retires_at)),
            now,
        )
        .map(|i| &self.keys[i])
    }

    /// The `kid` that signs at `now`.
    pub fn current_kid(&self, now: UnixTime) -> Option<&str> {
        self.signer(now).map(|k| k.kid.as_str())
    }

    /// The `kid`s published at `now` (what [`KeyRing::jwks`] lists).
    pub fn published_kids(&self, now: UnixTime) -> Vec<&str> {
        self.keys
            .iter()
            .filter(|k| k.published_at(now))
            .map(|k| k.kid.as_str())
            .collect()
    }

    /// A compact JWS of `claims` with header `{"alg":"EdDSA","typ":typ,"kid":…}`.
    /// Signed by the key that is current at `now`.
    pub fn sign(
        &self,
        typ: &str,
        claims: &impl Serialize,
        now: UnixTime,
    ) -> Result<String, EngineError> {
        let signer = self
            .signer(now)
            .ok_or_else(|| EngineError::internal("no current signing key"))?;
        let payload = serde_json::to_vec(claims)
            .map_err(|e| EngineError::internal_caused("encoding JWT claims", e))?;
        // Room for the header, the encoded payload and the signature: no regrowth.
        let mut token = String::with_capacity(128 + payload.len() * 4 / 3 + 90);
        match signer.headers.iter().find(|(t, _)| *t == typ) {
            Some((_, header)) => token.push_str(header),
            None => token.push_str(&encoded_header(&signer.kid, typ)?),
        }
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = ed25519_dalek::Signer::sign(&signer.signing, token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        Ok(token)
    }

    /// Whether `token`'s header names a key this ring does not know (a key another node may
    /// have scheduled since this ring was loaded). A retired key is known: it is refused
    /// without sending anyone to the database.
    pub fn kid_unknown(&self, token: &str) -> bool {
        header_of(token).and_then(|h| h.kid).is_some_and(|kid| {
            !self.retired.contains(&kid) && !self.keys.iter().any(|k| k.kid == kid)
        })
    }

    /// Verifies signature, `typ`, `iss` and `aud`, and that the signing key is not retired at
    /// `now`: once a key's `retires_at` has passed, every token it signed has expired, and one
    /// that claims otherwise is refused. Expiry itself is checked by the caller.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now: UnixTime,
    ) -> Option<AccessTokenClaims> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self
            .verified
            .lock()
            .expect("verified cache poisoned")
            .get(&digest)
            .cloned();
        let (claims, key) = match cached {
            Some(hit) => hit,
            None => {
                let hit = self.check_signature(token)?;
                let mut cache = self.verified.lock().expect("verified cache poisoned");
                if cache.len() >= VERIFIED_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(digest, hit.clone());
                hit
            }
        };
        (self.keys[key].published_at(now) && claims.iss == issuer && claims.aud == audience)
            .then_some(claims)
    }

    /// The full check behind [`KeyRing::verify`] without its memory of verified tokens (and
    /// without `iss`/`aud`): what a token costs the first time it is seen.
    pub fn verify_signature(&self, token: &str, now: UnixTime) -> Option<AccessTokenClaims> {
        let (claims, key) = self.check_signature(token)?;
        self.keys[key].published_at(now).then_some(claims)
    }

    /// Signature and header checks; the claims and the index of the key that signed them.
    fn check_signature(&self, token: &str) -> Option<(AccessTokenClaims, usize)> {
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
        let kid = header.kid.as_deref()?;
        let index = self.keys.iter().position(|k| k.kid == kid)?;
        let key = &self.keys[index].verifying;
        let signature = ed25519_dalek::Signature::from_slice(&decode_part(signature_b64)?).ok()?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        // Strict: refuses non-canonical signatures and small-order keys (no malleability).
        key.verify_strict(signing_input.as_bytes(), &signature)
            .ok()?;
        let claims = serde_json::from_slice(&decode_part(payload_b64)?).ok()?;
        Some((claims, index))
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| &k.kid).collect();
        f.debug_struct("KeyRing")
            .field("published", &kids)
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OsRandom;

    /// The instant the tests look at the ring; the keys activated at 1.
    const T: UnixTime = 1_000;

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
        let rec = generate_key(&OsRandom, &master, 1, 1);
        let ring = KeyRing::load(std::slice::from_ref(&rec), &master, T).unwrap();
        let jwt = ring.sign(ACCESS_TOKEN_TYP, &claims(), T).unwrap();
        let header = header_of(&jwt).unwrap();
        assert_eq!(header.alg, "EdDSA");
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(rec.kid.as_str()));
        assert_eq!(
            ring.verify(&jwt, "https://khoa.test", "api", T),
            Some(claims())
        );
        assert_eq!(ring.verify(&jwt, "https://other", "api", T), None);
        assert_eq!(ring.verify(&jwt, "https://khoa.test", "other", T), None);
    }

    #[test]
    fn a_token_from_a_foreign_key_is_refused() {
        let master = MasterKey::generate(&OsRandom);
        let ours = KeyRing::load(&[generate_key(&OsRandom, &master, 1, 1)], &master, T).unwrap();
        let theirs = KeyRing::load(&[generate_key(&OsRandom, &master, 1, 1)], &master, T).unwrap();
        let jwt = theirs.sign(ACCESS_TOKEN_TYP, &claims(), T).unwrap();
        assert_eq!(ours.verify(&jwt, "https://khoa.test", "api", T), None);
        // Tampering with the payload breaks the signature.
        let ours_jwt = ours.sign(ACCESS_TOKEN_TYP, &claims(), T).unwrap();
        let mut parts: Vec<&str> = ours_jwt.split('.').collect();
        let evil = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#);
        parts[1] = &evil;
        assert_eq!(
            ours.verify(&parts.join("."), "https://khoa.test", "api", T),
            None
        );
    }

    #[test]
    fn jwks_publishes_public_halves_only_and_private_key_is_sealed() {
        let master = MasterKey::generate(&OsRandom);
        let rec = generate_key(&OsRandom, &master, 1, 1);
        let ring = KeyRing::load(std::slice::from_ref(&rec), &master, T).unwrap();
        let jwks: serde_json::Value = serde_json::from_str(&ring.jwks(T).body).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], rec.kid);
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
        assert!(jwks["keys"][0].get("d").is_none());
        let wrong = MasterKey::generate(&OsRandom);
        assert!(KeyRing::load(&[rec], &wrong, T).is_err());
    }

    /// A token with the given header and our claims, signed by `ring`'s key over exactly what
    /// it carries — so that only the header decides.
    fn forge(ring: &KeyRing, header: serde_json::Value) -> String {
        let key = &ring.signer(T).unwrap().signing;
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
        let rec = generate_key(&OsRandom, &master, 1, 1);
        let ring = KeyRing::load(std::slice::from_ref(&rec), &master, T).unwrap();
        let ok = |h| {
            ring.verify(&forge(&ring, h), "https://khoa.test", "api", T)
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
        let ring = KeyRing::load(&[generate_key(&OsRandom, &master, 1, 1)], &master, T).unwrap();
        let jwt = ring.sign(ACCESS_TOKEN_TYP, &claims(), T).unwrap();
        let v = |t: &str| ring.verify(t, "https://khoa.test", "api", T).is_some();
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

    /// An old key retiring at 5000 and a next key activating at 2000.
    fn scheduled(master: &MasterKey) -> (SigningKeyRecord, SigningKeyRecord) {
        let mut old = generate_key(&OsRandom, master, 1, 1);
        old.retires_at = Some(5_000);
        let next = generate_key(&OsRandom, master, T, 2_000);
        (old, next)
    }

    #[test]
    fn the_signer_is_chosen_by_time_and_both_keys_are_published_meanwhile() {
        let master = MasterKey::generate(&OsRandom);
        let (old, next) = scheduled(&master);
        let ring = KeyRing::load(&[old.clone(), next.clone()], &master, T).unwrap();

        assert_eq!(ring.current_kid(1_999), Some(old.kid.as_str()));
        assert_eq!(ring.current_kid(2_000), Some(next.kid.as_str()));
        assert_eq!(
            ring.published_kids(1_999),
            [old.kid.as_str(), next.kid.as_str()]
        );
        assert_eq!(ring.published_kids(4_999).len(), 2);
        assert_eq!(ring.published_kids(5_000), [next.kid.as_str()]);
        let kid_at = |t| {
            header_of(&ring.sign(ACCESS_TOKEN_TYP, &claims(), t).unwrap())
                .unwrap()
                .kid
        };
        assert_eq!(kid_at(1_999), Some(old.kid.clone()));
        assert_eq!(kid_at(2_000), Some(next.kid.clone()));
    }

    #[test]
    fn the_jwks_and_its_etag_change_exactly_when_a_key_retires() {
        let master = MasterKey::generate(&OsRandom);
        let (old, next) = scheduled(&master);
        let ring = KeyRing::load(&[old.clone(), next.clone()], &master, T).unwrap();
        let kids = |t| -> Vec<String> {
            let doc: serde_json::Value = serde_json::from_str(&ring.jwks(t).body).unwrap();
            doc["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect()
        };

        assert_eq!(kids(4_999), [old.kid.clone(), next.kid.clone()]);
        assert_eq!(kids(5_000), vec![next.kid.to_owned()]);
        assert_eq!(ring.jwks(T), ring.jwks(4_999));
        assert_ne!(ring.jwks(4_999).etag, ring.jwks(5_000).etag);
        assert!(ring.jwks(T).etag.starts_with('"') && ring.jwks(T).etag.ends_with('"'));
        // The same keys give the same tag on any node, whatever it loaded when.
        let later = KeyRing::load(&[old, next], &master, 4_000).unwrap();
        assert_eq!(later.jwks(4_000).etag, ring.jwks(4_000).etag);
    }

    #[test]
    fn a_token_of_the_old_key_verifies_until_its_retirement_and_is_refused_after() {
        let master = MasterKey::generate(&OsRandom);
        let (old, next) = scheduled(&master);
        let ring = KeyRing::load(&[old.clone(), next], &master, T).unwrap();
        let token = ring.sign(ACCESS_TOKEN_TYP, &claims(), 1_500).unwrap();
        let v = |t| ring.verify(&token, "https://khoa.test", "api", t).is_some();

        assert!(v(4_999));
        assert!(!v(5_000), "refused even though remembered as verified");
        assert!(ring.verify_signature(&token, 4_999).is_some());
        assert!(ring.verify_signature(&token, 5_000).is_none());
        // A ring loaded after the retirement knows the kid (no reload) and refuses it.
        let after = KeyRing::load(std::slice::from_ref(&old), &master, 5_000).unwrap();
        assert!(!after.kid_unknown(&token));
        assert!(
            after
                .verify(&token, "https://khoa.test", "api", 5_000)
                .is_none()
        );
    }

    #[test]
    fn key_states_follow_the_schedule() {
        let master = MasterKey::generate(&OsRandom);
        let (old, next) = scheduled(&master);
        let keys = [old, next];
        let at = |t| key_states(&keys, t);

        assert_eq!(at(1_999), [KeyState::Current, KeyState::Next]);
        assert_eq!(at(2_000), [KeyState::Previous, KeyState::Current]);
        assert_eq!(at(5_000), [KeyState::Retired, KeyState::Current]);
    }

    #[test]
    fn among_keys_activating_in_the_same_second_the_later_one_signs() {
        let master = MasterKey::generate(&OsRandom);
        let first = generate_key(&OsRandom, &master, 1, 1);
        let second = generate_key(&OsRandom, &master, 1, 1);
        let ring = KeyRing::load(&[first, second.clone()], &master, T).unwrap();
        assert_eq!(ring.current_kid(T), Some(second.kid.as_str()));
    }
}
