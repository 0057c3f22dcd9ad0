//! RFC 9068 JWT access tokens: the JWS compact serialization (RFC 7515 §7.1) taken apart, the
//! header checked before any key is looked up, the signature and the claims checked after.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;

use crate::claims::{Claims, Scopes, TokenSource};
use crate::error::AuthError;

/// The only algorithm khoa signs with (RFC 8037 §3.1).
pub(crate) const ALG: &str = "EdDSA";
/// RFC 9068 §2.1. khoa's JWT refresh tokens say `rt+jwt`, and must never pass for this.
pub(crate) const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Whether `token` has the shape of a JWS compact serialization: three non-empty parts.
/// Anything else is treated as opaque and introspected.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    let mut n = 0;
    for part in token.split('.') {
        if part.is_empty() {
            return false;
        }
        n += 1;
    }
    n == 3
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    /// RFC 7515 §4.1.11: extensions we would have to understand; we understand none.
    crit: Option<serde_json::Value>,
}

/// A JWT whose header passed: what is left is the key lookup and [`Parsed::verify`].
pub(crate) struct Parsed<'a> {
    pub(crate) kid: String,
    signing_input: &'a str,
    payload_b64: &'a str,
    signature: Signature,
}

fn invalid(reason: &'static str) -> AuthError {
    AuthError::InvalidToken(reason)
}

/// Takes the token apart and checks its header: only `EdDSA`, only `typ: at+jwt` (RFC 9068 §4
/// step 1; `JWT` and khoa's `rt+jwt` are refused), no `crit`, a `kid`. Nothing here costs a
/// fetch, so a hostile header never reaches the JWKS.
pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("not a compact JWS"));
    };
    let header: JoseHeader = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(invalid("unreadable JOSE header"))?;
    if header.alg != ALG {
        return Err(invalid("alg is not EdDSA"));
    }
    if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
        return Err(invalid("typ is not at+jwt"));
    }
    if header.crit.is_some() {
        return Err(invalid("crit header present"));
    }
    let kid = header.kid.ok_or(invalid("no kid"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or(invalid("unreadable signature"))?;
    Ok(Parsed {
        kid,
        signing_input: &token[..h.len() + 1 + p.len()],
        payload_b64: p,
        signature,
    })
}

/// What the claims must say besides the signature.
pub(crate) struct Expectations<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) audience: &'a str,
    pub(crate) leeway: i64,
    pub(crate) now: i64,
}

/// RFC 9068 §2.2: the claims a JWT access token must carry.
#[derive(Deserialize)]
struct AccessClaims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    iat: i64,
    jti: String,
    client_id: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    sid: Option<String>,
}

/// RFC 7519 §4.1.3: one audience or several.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(crate) fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

/// `exp`, `nbf` and `iat` against `now`, each with the leeway (RFC 7519 §4.1.4–6).
pub(crate) fn check_times(
    exp: i64,
    nbf: Option<i64>,
    iat: Option<i64>,
    e: &Expectations<'_>,
) -> Result<(), AuthError> {
    if exp.saturating_add(e.leeway) <= e.now {
        return Err(invalid("expired"));
    }
    if nbf.is_some_and(|nbf| nbf > e.now.saturating_add(e.leeway)) {
        return Err(invalid("not yet valid"));
    }
    if iat.is_some_and(|iat| iat > e.now.saturating_add(e.leeway)) {
        return Err(invalid("issued in the future"));
    }
    Ok(())
}

impl Parsed<'_> {
    /// Strict Ed25519 verification (no malleable signatures, no small-order keys), then the
    /// RFC 9068 §4 claim checks.
    pub(crate) fn verify(
        self,
        key: &VerifyingKey,
        e: &Expectations<'_>,
    ) -> Result<Claims, AuthError> {
        key.verify_strict(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| invalid("bad signature"))?;
        let raw: serde_json::Value = URL_SAFE_NO_PAD
            .decode(self.payload_b64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(invalid("unreadable payload"))?;
        let c: AccessClaims = serde_json::from_value(raw.clone())
            .map_err(|_| invalid("missing or mistyped claims"))?;
        if c.iss != e.issuer {
            return Err(invalid("wrong issuer"));
        }
        if !c.aud.contains(e.audience) {
            return Err(invalid("wrong audience"));
        }
        check_times(c.exp, c.nbf, Some(c.iat), e)?;
        Ok(Claims {
            sub: c.sub,
            client_id: c.client_id,
            scope: Scopes::parse(c.scope.as_deref().unwrap_or_default()),
            exp: c.exp,
            iat: Some(c.iat),
            jti: Some(c.jti),
            sid: c.sid,
            source: TokenSource::Jwt,
            raw,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    pub(crate) fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    pub(crate) fn sign(
        key: &SigningKey,
        header: serde_json::Value,
        claims: serde_json::Value,
    ) -> String {
        let mut t = URL_SAFE_NO_PAD.encode(header.to_string());
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = key.sign(t.as_bytes());
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        t
    }

    pub(crate) fn good_claims(now: i64) -> serde_json::Value {
        json!({
            "iss": "https://khoa.test", "sub": "usr_1", "aud": "api", "exp": now + 300,
            "iat": now, "jti": "j1", "client_id": "app", "scope": "read write", "sid": "fam",
        })
    }

    fn expect(now: i64) -> Expectations<'static> {
        Expectations {
            issuer: "https://khoa.test",
            audience: "api",
            leeway: 10,
            now,
        }
    }

    fn check(token: &str, k: &SigningKey, now: i64) -> Result<Claims, AuthError> {
        parse(token)?.verify(&k.verifying_key(), &expect(now))
    }

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn a_well_formed_token_yields_its_claims() {
        let k = key(1);
        let t = sign(
            &k,
            json!({"alg":"EdDSA","typ":"at+jwt","kid":"k1"}),
            good_claims(NOW),
        );
        assert_eq!(parse(&t).unwrap().kid, "k1");
        let c = check(&t, &k, NOW).unwrap();
        assert_eq!((c.sub.as_str(), c.client_id.as_str()), ("usr_1", "app"));
        assert_eq!(c.scope.to_string(), "read write");
        assert_eq!(c.sid.as_deref(), Some("fam"));
        assert_eq!(c.jti.as_deref(), Some("j1"));
        assert_eq!(c.source, TokenSource::Jwt);
        assert_eq!(c.raw["aud"], "api");
    }

    #[test]
    fn headers_other_than_eddsa_at_jwt_with_kid_are_refused_before_any_lookup() {
        let k = key(1);
        for h in [
            json!({"alg":"none","typ":"at+jwt","kid":"k1"}),
            json!({"alg":"HS256","typ":"at+jwt","kid":"k1"}),
            json!({"alg":"EdDSA","typ":"JWT","kid":"k1"}),
            json!({"alg":"EdDSA","typ":"rt+jwt","kid":"k1"}),
            json!({"alg":"EdDSA","kid":"k1"}),
            json!({"alg":"EdDSA","typ":"at+jwt"}),
            json!({"alg":"EdDSA","typ":"at+jwt","kid":"k1","crit":["exp"]}),
        ] {
            let t = sign(&k, h.clone(), good_claims(NOW));
            assert!(matches!(parse(&t), Err(AuthError::InvalidToken(_))), "{h}");
        }
    }

    #[test]
    fn claims_are_checked_after_the_signature() {
        let k = key(1);
        let h = json!({"alg":"EdDSA","typ":"at+jwt","kid":"k1"});
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut c = good_claims(NOW);
            f(&mut c);
            check(&sign(&k, h.clone(), c), &k, NOW)
        };
        assert!(with(&|_| {}).is_ok());
        assert_eq!(
            with(&|c| c["iss"] = json!("https://evil")).unwrap_err(),
            invalid("wrong issuer")
        );
        assert_eq!(
            with(&|c| c["aud"] = json!("other")).unwrap_err(),
            invalid("wrong audience")
        );
        assert!(with(&|c| c["aud"] = json!(["other", "api"])).is_ok());
        assert_eq!(
            with(&|c| c["exp"] = json!(NOW - 11)).unwrap_err(),
            invalid("expired")
        );
        assert!(
            with(&|c| c["exp"] = json!(NOW - 5)).is_ok(),
            "within the leeway"
        );
        assert_eq!(
            with(&|c| c["nbf"] = json!(NOW + 60)).unwrap_err(),
            invalid("not yet valid")
        );
        assert_eq!(
            with(&|c| c["iat"] = json!(NOW + 60)).unwrap_err(),
            invalid("issued in the future")
        );
        assert!(
            with(&|c| {
                c.as_object_mut().unwrap().remove("client_id");
            })
            .is_err()
        );
        assert!(
            with(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            })
            .is_err()
        );
    }

    #[test]
    fn another_key_or_a_tampered_payload_fails_the_signature() {
        let k = key(1);
        let t = sign(
            &k,
            json!({"alg":"EdDSA","typ":"at+jwt","kid":"k1"}),
            good_claims(NOW),
        );
        assert_eq!(
            check(&t, &key(2), NOW).unwrap_err(),
            invalid("bad signature")
        );
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let mut evil = good_claims(NOW);
        evil["sub"] = json!("admin");
        parts[1] = URL_SAFE_NO_PAD.encode(evil.to_string());
        assert_eq!(
            check(&parts.join("."), &k, NOW).unwrap_err(),
            invalid("bad signature")
        );
    }

    #[test]
    fn only_three_non_empty_parts_look_like_a_jwt() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a..c"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("ACCOUNT||KEYID||0123"));
    }
}
