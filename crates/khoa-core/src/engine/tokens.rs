//! Tokens: the token endpoint (client authentication, grant dispatch, the audit of each
//! issuance), bearer validation of every format khoa issues, RFC 7009 revocation, RFC 7662
//! introspection and the JWT revocation list.

use secrecy::ExposeSecret;
use std::sync::Arc;

use crate::audit::{Auditor, token_ref};
use crate::client_cache::ClientCache;
use crate::client_key::ClientKeys;
use crate::clock::Clock;
use crate::error::{Detail, EngineError, ErrorCode, OAuthError};
use crate::grant::authorization_code::AuthorizationCodeGrant;
use crate::grant::client_credentials::ClientCredentialsGrant;
use crate::grant::password::PasswordGrant;
use crate::grant::refresh_token::RefreshTokenGrant;
use crate::grant::{ClientAuth, GrantHandler, TokenRequest};
use crate::keys::KeyRing;
use crate::mint::{IssuedTokens, KeyRingHandle};
use crate::model::{AccessTokenFormat, Client, GrantType, UnixTime, User};
use crate::partner::Partners;
use crate::revocation::{Introspection, RevocationList, TokenKind};
use crate::scope::ScopeSet;
use crate::secret::{SecretHasher, token_hash};
use crate::store::{
    AuditEvent, AuditKind, RefreshState, RevokedJwt, StoreError, TokenStore, UserStore,
};
use serde_json::json;

/// The validated identity behind a bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub client_id: String,
    pub scope: ScopeSet,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub format: AccessTokenFormat,
    /// SHA-256 (hex) of the `otp_token` bound to the token, if its policy issued one.
    pub otp_hash: Option<String>,
    /// `jti` of a JWT access token; stored tokens are named by their hash instead.
    pub token_id: Option<String>,
}

impl Principal {
    /// Whether a request that must prove the session's second secret (seed 000: order
    /// placement, amendment, cancellation) did so. A token without one needs none.
    pub fn otp_satisfied(&self, presented: Option<&str>) -> bool {
        match (&self.otp_hash, presented) {
            (None, _) => true,
            (Some(expected), Some(p)) => {
                crate::secret::ct_eq(token_hash(p).as_bytes(), expected.as_bytes())
            }
            (Some(_), None) => false,
        }
    }
}

/// Why a bearer token was refused. The reasons are for logs; RFC 6750 answers all of them
/// with the same `invalid_token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BearerError {
    Invalid(&'static str),
    Unavailable(String),
}

/// The token side of the engine. Built by [`crate::engine::Engine::new`].
pub struct Tokens {
    pub(super) issuer: String,
    pub(super) audience: String,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) secrets: SecretHasher,
    pub(super) clients: Arc<ClientCache>,
    pub(super) keys: Arc<KeyRingHandle>,
    pub(super) revocations: RevocationList,
    pub(super) tokens: Arc<dyn TokenStore>,
    pub(super) users: Arc<dyn UserStore>,
    pub(super) partners: Partners,
    pub(super) client_keys: ClientKeys,
    pub(super) password_grant: Arc<PasswordGrant>,
    pub(super) client_credentials_grant: ClientCredentialsGrant,
    pub(super) refresh_grant: RefreshTokenGrant,
    pub(super) code_grant: AuthorizationCodeGrant,
    pub(super) audit: Auditor,
}

impl Tokens {
    fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The signing keys as this node last read them: JWKS, and JWT verification.
    pub fn key_ring(&self) -> Arc<KeyRing> {
        self.keys.current()
    }

    /// The partners of the encrypted dialect (seed 002), whose envelopes carry the login.
    pub fn partners(&self) -> &Partners {
        &self.partners
    }

    /// The keys clients sign their requests with (the signature dialects).
    pub fn client_keys(&self) -> &ClientKeys {
        &self.client_keys
    }

    /// RFC 6749 §3.2: the token endpoint. Authenticates the client, checks it may use the
    /// grant, and runs the grant.
    pub async fn token(&self, request: &TokenRequest) -> Result<IssuedTokens, EngineError> {
        let grant_type = request
            .grant_type
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_request("the grant_type parameter is required"))?;
        let grant: GrantType = grant_type.parse().map_err(|_| {
            OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "this grant type is not supported",
            )
        })?;
        let client = self.authenticate_client(&request.client).await?;
        if !client.allows_grant(grant) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use this grant type",
            )
            .into());
        }
        let handler: &dyn GrantHandler = match grant {
            GrantType::Password => &*self.password_grant,
            GrantType::ClientCredentials => &self.client_credentials_grant,
            GrantType::RefreshToken => &self.refresh_grant,
            GrantType::AuthorizationCode => &self.code_grant,
        };
        let result = handler.handle(&client, request).await;
        self.audit_token(grant, &client, request, &result).await;
        result
    }

    /// The audit events of one token request: the login (password grant) and the issuance.
    /// The most frequent event of all, so its detail is a typed struct that leaves out what is
    /// absent (a JWT has no stored hash, most grants no refresh token, OTP or ID token).
    async fn audit_token(
        &self,
        grant: GrantType,
        client: &Client,
        request: &TokenRequest,
        result: &Result<IssuedTokens, EngineError>,
    ) {
        let now = self.now();
        let event = |kind, detail| AuditEvent::new(now, kind, detail).client(&client.client_id);
        match result {
            Ok(t) => {
                if grant == GrantType::Password {
                    let login = event(AuditKind::LoginSuccess, json!({ "via": "password" }));
                    self.audit.emit(login.subject(&t.subject)).await;
                }
                let detail = TokenIssuedDetail {
                    grant: grant.as_str(),
                    scope: t.scope.to_string(),
                    access: t.refs.access_hash.as_deref(),
                    access_jti: t.refs.access_jti.as_deref(),
                    refresh: t.refs.refresh_hash.as_deref(),
                    otp: t.otp_token.is_some(),
                    id_token: t.id_token.is_some(),
                };
                let issued = AuditEvent::new(now, AuditKind::TokenIssued, detail)
                    .client(&client.client_id)
                    .subject(&t.subject);
                self.audit.emit(issued).await;
            }
            Err(EngineError::OAuth(e))
                if grant == GrantType::Password
                    && matches!(e.detail, Detail::BadCredentials | Detail::AccountDisabled) =>
            {
                let reason = match e.detail {
                    Detail::AccountDisabled => "account_disabled",
                    _ => "bad_credentials",
                };
                let mut failed = event(
                    AuditKind::LoginFailure,
                    json!({ "via": "password", "reason": reason }),
                );
                // The username tried: who was attacked matters more than whether it exists.
                failed.subject = request.username.clone();
                self.audit.emit(failed).await;
            }
            Err(_) => {}
        }
    }

    /// RFC 6749 §2.3. Every failure is the same `invalid_client`; the secret check runs even for
    /// unknown clients so that timing does not reveal which ids exist.
    pub async fn authenticate_client(&self, auth: &ClientAuth) -> Result<Client, EngineError> {
        let fail = || EngineError::from(OAuthError::invalid_client("client authentication failed"));
        let (client_id, secret) = match auth {
            ClientAuth::None => {
                return Err(OAuthError::invalid_client("client authentication is required").into());
            }
            ClientAuth::IdOnly { client_id } => (client_id, None),
            ClientAuth::Attested { client_id } => {
                return match self.clients.find(client_id, self.now()).await? {
                    Some(c) if !c.disabled => Ok(c),
                    _ => Err(fail()),
                };
            }
            ClientAuth::Basic { client_id, secret } | ClientAuth::Post { client_id, secret } => {
                (client_id, Some(secret))
            }
        };
        let now = self.now();
        let check = |client: &Option<Client>| {
            let ok = match (client, secret) {
                (Some(c), None) => c.is_public(),
                (client, Some(secret)) => {
                    let stored = client.as_ref().and_then(|c| c.secret_hash.as_deref());
                    self.secrets.verify(secret.expose_secret(), stored)
                }
                (None, None) => false,
            };
            ok && client.as_ref().is_some_and(|c| !c.disabled)
        };
        let mut client = self.clients.find(client_id, now).await?;
        // A cached copy may predate a change made elsewhere (a rotated secret): before refusing,
        // look at the store itself once.
        if !check(&client) && client.is_some() {
            client = self.clients.refresh(client_id, now).await?;
        }
        if check(&client) {
            client.ok_or_else(fail)
        } else {
            Err(fail())
        }
    }

    /// RFC 6750: validates a bearer access token of any format khoa issues.
    pub async fn validate_bearer(&self, token: &str) -> Result<Principal, BearerError> {
        let now = self.now();
        if token.len() > 4096 {
            return Err(BearerError::Invalid("oversized token"));
        }
        let unavailable = |e: StoreError| BearerError::Unavailable(e.to_string());
        if token.bytes().filter(|b| *b == b'.').count() == 2 {
            let mut ring = self.keys.current();
            // A key rotated in by another node since our last reload: look once more.
            if ring.kid_unknown(token) && self.keys.reload_for_unknown_kid(now).await {
                ring = self.keys.current();
            }
            let claims = ring
                .verify(token, &self.issuer, &self.audience, now)
                .ok_or(BearerError::Invalid("signature, issuer or audience"))?;
            if claims.exp <= now {
                return Err(BearerError::Invalid("expired"));
            }
            if self
                .revocations
                .is_revoked(&claims.jti, now)
                .await
                .map_err(unavailable)?
            {
                return Err(BearerError::Invalid("revoked"));
            }
            if let Some(sid) = &claims.sid {
                let family = self.tokens.find_family(sid).await.map_err(unavailable)?;
                if family.is_none_or(|f| f.revoked_at.is_some()) {
                    return Err(BearerError::Invalid("session revoked"));
                }
            }
            return Ok(Principal {
                subject: claims.sub,
                client_id: claims.client_id,
                scope: ScopeSet::parse(&claims.scope).unwrap_or_default(),
                issued_at: claims.iat,
                expires_at: claims.exp,
                format: AccessTokenFormat::Jwt,
                otp_hash: claims.otp_sha256,
                token_id: Some(claims.jti),
            });
        }
        let state = self
            .tokens
            .find_access_token(token)
            .await
            .map_err(unavailable)?
            .ok_or(BearerError::Invalid("unknown token"))?;
        if state.revoked {
            return Err(BearerError::Invalid("revoked"));
        }
        if state.record.expires_at <= now {
            return Err(BearerError::Invalid("expired"));
        }
        let r = state.record;
        // The stored formats differ by shape alone.
        let format = if token.contains("||") {
            AccessTokenFormat::Account
        } else if token.len() == 40 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
            AccessTokenFormat::Hex40
        } else {
            AccessTokenFormat::Opaque
        };
        Ok(Principal {
            subject: r.subject,
            client_id: r.client_id,
            scope: r.scope,
            issued_at: r.issued_at,
            expires_at: r.expires_at,
            format,
            otp_hash: r.otp_hash,
            token_id: None,
        })
    }

    /// RFC 7009 §2: revokes `token` if it is one of `auth`'s client's. Unknown tokens, tokens
    /// of other clients and already invalid tokens are not an error (§2.2: the client cannot
    /// act on the difference, and telling it would reveal which tokens exist).
    pub async fn revoke(
        &self,
        auth: &ClientAuth,
        token: &str,
        hint: Option<&str>,
    ) -> Result<(), EngineError> {
        let client = self.authenticate_client(auth).await?;
        let now = self.now();
        for kind in TokenKind::search_order(hint) {
            let found = match kind {
                TokenKind::Refresh => match self.tokens.find_refresh_token(token).await? {
                    // §2.1: a refresh token takes its grant's access tokens with it: the family
                    // is what every one of them checks.
                    Some(state) => {
                        if state.family.client_id == client.client_id {
                            self.tokens.revoke_family(&state.family.id, now).await?;
                            let detail = json!({
                                "token_type": "refresh_token",
                                "family_id": state.family.id,
                                "token": token_ref(token),
                            });
                            let event = AuditEvent::new(now, AuditKind::Revocation, detail)
                                .subject(&state.family.subject)
                                .client(&client.client_id);
                            self.audit.emit(event).await;
                        }
                        true
                    }
                    None => false,
                },
                TokenKind::Access => self.revoke_access(&client, token, now).await?,
            };
            if found {
                break;
            }
        }
        Ok(())
    }

    /// Revokes an access token of `client`; returns whether `token` is an access token khoa
    /// knows (of whichever client).
    async fn revoke_access(
        &self,
        client: &Client,
        token: &str,
        now: UnixTime,
    ) -> Result<bool, EngineError> {
        if token.len() <= 4096 && token.bytes().filter(|b| *b == b'.').count() == 2 {
            let Some(claims) = self.key_ring().verify_signature(token, now) else {
                return Ok(false);
            };
            if claims.client_id == client.client_id && claims.exp > now {
                let detail = json!({ "token_type": "access_token", "jti": claims.jti });
                let event = AuditEvent::new(now, AuditKind::Revocation, detail)
                    .subject(&claims.sub)
                    .client(&client.client_id);
                let entry = RevokedJwt {
                    jti: claims.jti,
                    expires_at: claims.exp,
                    revoked_at: now,
                };
                self.revocations.revoke(entry).await?;
                self.audit.emit(event).await;
            }
            return Ok(true);
        }
        match self.tokens.find_access_token(token).await? {
            Some(state) => {
                if state.record.client_id == client.client_id {
                    self.tokens.revoke_access(&state.record.hash).await?;
                    let detail = json!({ "token_type": "access_token", "token": token_ref(token) });
                    let event = AuditEvent::new(now, AuditKind::Revocation, detail)
                        .subject(&state.record.subject)
                        .client(&client.client_id);
                    self.audit.emit(event).await;
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// RFC 7662 §2: what an authenticated client may learn about `token`; `None` when it is
    /// not active (unknown, expired, revoked, redeemed, malformed). Only confidential clients
    /// may ask: a public client proves nothing about who is asking (§2.1).
    pub async fn introspect(
        &self,
        auth: &ClientAuth,
        token: &str,
        hint: Option<&str>,
    ) -> Result<Option<Introspection>, EngineError> {
        let client = self.authenticate_client(auth).await?;
        if client.is_public() {
            return Err(
                OAuthError::invalid_client("introspection requires a confidential client").into(),
            );
        }
        let now = self.now();
        for kind in TokenKind::search_order(hint) {
            match kind {
                TokenKind::Refresh => {
                    if let Some(state) = self.tokens.find_refresh_token(token).await? {
                        return Ok(self.refresh_introspection(state, now));
                    }
                }
                TokenKind::Access => match self.validate_bearer(token).await {
                    Ok(p) => {
                        return Ok(Some(Introspection {
                            kind: TokenKind::Access,
                            scope: p.scope,
                            client_id: p.client_id,
                            subject: p.subject,
                            expires_at: p.expires_at,
                            issued_at: p.issued_at,
                            audience: self.audience.clone(),
                            issuer: self.issuer.clone(),
                            token_id: p.token_id,
                        }));
                    }
                    Err(BearerError::Unavailable(e)) => {
                        return Err(EngineError::Unavailable(e));
                    }
                    Err(BearerError::Invalid(_)) => {}
                },
            }
        }
        Ok(None)
    }

    /// The JWT revocation list from `since` (a poll of resource servers that verify JWTs
    /// offline, e.g. `khoa-resource`), and the time it was read at: the next poll's `since`.
    /// Only confidential clients may read it, as they may introspect.
    pub async fn revoked_jwts(
        &self,
        auth: &ClientAuth,
        since: UnixTime,
    ) -> Result<(Vec<RevokedJwt>, UnixTime), EngineError> {
        let client = self.authenticate_client(auth).await?;
        if client.is_public() {
            return Err(OAuthError::invalid_client(
                "the revocation list is for confidential clients",
            )
            .into());
        }
        let now = self.now();
        let list = self.tokens.revoked_jwts_since(since, now).await?;
        Ok((list, now))
    }

    fn refresh_introspection(&self, state: RefreshState, now: UnixTime) -> Option<Introspection> {
        let live = state.used_at.is_none()
            && state.expires_at > now
            && state.family.revoked_at.is_none()
            && state.family.session_expires_at > now;
        live.then(|| Introspection {
            kind: TokenKind::Refresh,
            scope: state.family.scope,
            client_id: state.family.client_id,
            subject: state.family.subject,
            expires_at: state.expires_at.min(state.family.session_expires_at),
            issued_at: state.issued_at,
            // A refresh token is only ever presented back to khoa itself.
            audience: self.issuer.clone(),
            issuer: self.issuer.clone(),
            token_id: None,
        })
    }

    /// OpenID Connect Core §5.3: the user a bearer token speaks for, when it still exists.
    pub async fn userinfo(&self, principal: &Principal) -> Result<Option<User>, EngineError> {
        let user = self.users.find_user_by_id(&principal.subject).await?;
        Ok(user.filter(|u| !u.disabled))
    }
}

/// The detail of a `token_issued` event. The tokens are named by what the minter already had (a
/// JWT's `jti`, a stored token's hash prefix): hashing a JWT again cost more than the rest of
/// the event.
#[derive(serde::Serialize)]
struct TokenIssuedDetail<'a> {
    grant: &'a str,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    access: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_jti: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    otp: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    id_token: bool,
}
