//! Authorization code grant (RFC 6749 §4.1.3) with PKCE (RFC 7636, `S256` only) under the
//! rules of RFC 9700 §2.1.1 and §4.2: single-use codes, exact `redirect_uri`, short lifetime,
//! and a reused code revokes the tokens its first redemption produced.

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::{GrantHandler, TokenRequest, required, wants_refresh};
use crate::error::{EngineError, OAuthError};
use crate::mint::{IssuedTokens, Minter};
use crate::model::Client;
use crate::scope::OPENID;
use crate::secret::{ct_eq, token_hash};
use crate::store::{AuthCodeStore, RedeemOutcome, TokenStore, UserStore};

pub struct AuthorizationCodeGrant {
    pub(crate) codes: Arc<dyn AuthCodeStore>,
    pub(crate) tokens: Arc<dyn TokenStore>,
    pub(crate) users: Arc<dyn UserStore>,
    pub(crate) minter: Arc<Minter>,
    pub(crate) audit: crate::audit::Auditor,
}

/// RFC 6749 §5.2: every problem with the code itself is `invalid_grant`, and the description
/// does not say which check failed (a code thief learns nothing from the answer).
const BAD_CODE: &str =
    "the authorization code is invalid, expired, used, or was issued for another request";

/// RFC 7636 §4.1: `code-verifier = 43*128unreserved`,
/// `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"`.
pub fn verifier_is_well_formed(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.2 `S256`: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))).
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[async_trait]
impl GrantHandler for AuthorizationCodeGrant {
    async fn handle(
        &self,
        client: &Client,
        request: &TokenRequest,
    ) -> Result<IssuedTokens, EngineError> {
        let code = required(&request.code, "code")?;
        let redirect_uri = required(&request.redirect_uri, "redirect_uri")?;
        let verifier = required(&request.code_verifier, "code_verifier")?;
        let verifier = verifier.expose_secret();
        if !verifier_is_well_formed(verifier) {
            return Err(OAuthError::invalid_grant("the code_verifier is malformed").into());
        }
        let hash = token_hash(code.expose_secret());
        let bad = || EngineError::from(OAuthError::invalid_grant(BAD_CODE));
        let state = self.codes.find_code(&hash).await?.ok_or_else(bad)?;
        let now = self.minter.now();
        // A code belongs to one client (RFC 6749 §4.1.3); another client's attempt neither
        // redeems it nor revokes anything.
        if state.code.client_id != client.client_id {
            return Err(bad());
        }
        if state.used_at.is_some() {
            self.revoke(state.family_id.as_deref(), now).await?;
            return Err(bad());
        }
        let c = &state.code;
        // RFC 9700 §4.1.3 / RFC 6749 §4.1.3: the same string, byte for byte.
        let challenge_ok = ct_eq(
            s256_challenge(verifier).as_bytes(),
            c.code_challenge.as_bytes(),
        );
        if c.expires_at <= now || c.redirect_uri != *redirect_uri || !challenge_ok {
            return Err(bad());
        }
        let user = self.users.find_user_by_id(&c.subject).await?;
        let Some(user) = user.filter(|u| !u.disabled) else {
            return Err(OAuthError::invalid_grant("the account is disabled").into());
        };
        let grantee = self.minter.grantee(client, &user.id, &user.username);
        let with_refresh = wants_refresh(client, &c.scope);
        // Always a family, even without a refresh token: its `sid` is what lets a reuse of this
        // code revoke the JWT access token issued now.
        let (issuance, mut tokens) =
            self.minter
                .prepare(client, &grantee, c.scope.clone(), with_refresh, true, now)?;
        if c.scope.contains(OPENID) {
            let id_token =
                self.minter
                    .id_token(client, &user.id, c.auth_time, c.nonce.as_deref(), now)?;
            tokens.id_token = Some(id_token);
        }
        match self.codes.redeem_code(&hash, now, &issuance).await? {
            RedeemOutcome::Redeemed => Ok(tokens),
            // Lost a race with another redemption of the same code: that is a reuse too.
            RedeemOutcome::AlreadyUsed { family_id } => {
                self.revoke(family_id.as_deref(), now).await?;
                Err(bad())
            }
            RedeemOutcome::NotFound => Err(bad()),
        }
    }
}

impl AuthorizationCodeGrant {
    /// RFC 6749 §4.1.2: "If an authorization code is used more than once, the authorization
    /// server MUST deny the request and SHOULD revoke … all tokens previously issued based on
    /// that authorization code."
    async fn revoke(&self, family_id: Option<&str>, now: i64) -> Result<(), EngineError> {
        if let Some(family_id) = family_id
            && self.tokens.revoke_family(family_id, now).await?
        {
            tracing::warn!(
                family_id,
                "authorization code reused: its tokens are revoked"
            );
            if let Some(family) = self.tokens.find_family(family_id).await? {
                self.audit
                    .reuse(
                        &family.subject,
                        &family.client_id,
                        family_id,
                        "authorization_code",
                        true,
                        now,
                    )
                    .await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_appendix_b_example_verifies() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(verifier_is_well_formed(verifier));
        assert_eq!(
            s256_challenge(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_outside_the_rfc_7636_syntax_are_refused() {
        assert!(!verifier_is_well_formed(&"a".repeat(42)));
        assert!(verifier_is_well_formed(&"a".repeat(43)));
        assert!(verifier_is_well_formed(&"a".repeat(128)));
        assert!(!verifier_is_well_formed(&"a".repeat(129)));
        assert!(!verifier_is_well_formed(&format!("{}+", "a".repeat(43))));
        assert!(!verifier_is_well_formed(&format!("{} ", "a".repeat(43))));
        assert!(verifier_is_well_formed(&format!("{}-._~", "a".repeat(43))));
    }
}
