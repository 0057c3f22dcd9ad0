//! The engine: authenticates clients, dispatches grants, validates bearer tokens. Every
//! dialect calls into this one type; none of them knows how a token is made.

use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

use crate::audit::{Auditor, token_ref};
use crate::authorize::{AuthorizeError, AuthorizeRequest, CsrfGuard, IssuedCode, ValidAuthorize};
use crate::client_cache::ClientCache;
use crate::client_key::ClientKeys;
use crate::clock::{Clock, Random};
use crate::error::{Detail, EngineError, ErrorCode, OAuthError};
use crate::grant::authorization_code::AuthorizationCodeGrant;
use crate::grant::client_credentials::ClientCredentialsGrant;
use crate::grant::password::PasswordGrant;
use crate::grant::refresh_token::{RefreshTokenGrant, USER_ID_PREFIX};
use crate::grant::{ClientAuth, GrantHandler, TokenRequest};
use crate::keys::KeyRing;
use crate::master_key::MasterKey;
use crate::mint::{IssuedTokens, KeyRingHandle, KeyRotation, Minter, RotationOutcome};
use crate::model::{AccessTokenFormat, Client, GrantType, UnixTime, User};
use crate::partner::Partners;
use crate::password::{PasswordHasher, PasswordParams};
use crate::revocation::{Introspection, RevocationList, TokenKind};
use crate::scope::ScopeSet;
use crate::secret::{SecretHasher, generate_token, random_hex, token_hash};
use crate::store::{
    AuditEvent, AuditKind, AuthCode, LockoutPolicy, LoginFailures, NewUser, RefreshState,
    RevokedJwt, StoreError, Stores,
};
use serde_json::json;

/// Settings the engine needs; the server fills them from its typed config.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `iss` of every token and the base of discovery documents.
    pub issuer: String,
    /// `aud` of JWT access tokens: the resource servers they are meant for.
    pub audience: String,
    pub password: PasswordParams,
    /// Argon2 computations allowed at once (each holds `password.memory_kib`).
    pub password_concurrency: usize,
    /// Logins allowed to wait for a hash slot; more are refused with 503 at once.
    pub password_queue: usize,
    /// Seconds a client record is cached ([`ClientCache`]); 0 disables the cache.
    pub client_cache_secs: i64,
    /// Seconds an authorization code stays redeemable. RFC 6749 §4.1.2 recommends at most ten
    /// minutes; the code only has to survive one redirect, so khoa defaults to 60.
    pub auth_code_ttl: i64,
    /// When failed sign-ins lock an account.
    pub lockout: LockoutPolicy,
    /// Names this node in audit events (several nodes may share one database).
    pub node: Option<String>,
}

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

/// Operator-supplied client secrets must be at least this long: they are hashed with a fast
/// keyed hash, which is only safe for high-entropy secrets ([`SecretHasher`]).
pub const MIN_CLIENT_SECRET_LEN: usize = 32;

pub struct Engine {
    config: EngineConfig,
    stores: Stores,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    secrets: SecretHasher,
    passwords: PasswordHasher,
    clients: ClientCache,
    keys: Arc<KeyRingHandle>,
    partners: Partners,
    client_keys: ClientKeys,
    revocations: RevocationList,
    password_grant: PasswordGrant,
    client_credentials_grant: ClientCredentialsGrant,
    refresh_grant: RefreshTokenGrant,
    code_grant: AuthorizationCodeGrant,
    csrf: CsrfGuard,
    audit: Auditor,
}

impl Engine {
    /// Builds the engine over `stores`, creating the first signing key if there is none.
    pub async fn new(
        config: EngineConfig,
        stores: Stores,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Result<Self, EngineError> {
        let secrets = SecretHasher::new(master.derive("khoa client secret pepper v1"));
        let csrf = CsrfGuard::new(master.derive("khoa authorize csrf v1"));
        let passwords = PasswordHasher::new(
            config.password,
            config.password_concurrency,
            config.password_queue,
        )?;
        let audit = Auditor::new(stores.audit.clone(), config.node.clone());
        let clients = ClientCache::new(stores.clients.clone(), config.client_cache_secs);
        let partners = Partners {
            store: stores.partners.clone(),
            clients: stores.clients.clone(),
            master: master.clone(),
            clock: clock.clone(),
            random: random.clone(),
        };
        let client_keys = ClientKeys {
            store: stores.client_keys.clone(),
            clients: stores.clients.clone(),
            master: master.clone(),
            clock: clock.clone(),
            random: random.clone(),
        };
        let keys = Arc::new(
            KeyRingHandle::open(stores.keys.clone(), master, &*random, clock.now()).await?,
        );
        let minter = Arc::new(Minter {
            tokens: stores.tokens.clone(),
            keys: keys.clone(),
            clock: clock.clone(),
            random: random.clone(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        });
        Ok(Engine {
            password_grant: PasswordGrant {
                users: stores.users.clone(),
                passwords: passwords.clone(),
                minter: minter.clone(),
                failures: stores.login_failures.clone(),
                lockout: config.lockout,
                clock: clock.clone(),
                audit: audit.clone(),
            },
            client_credentials_grant: ClientCredentialsGrant {
                minter: minter.clone(),
            },
            refresh_grant: RefreshTokenGrant {
                tokens: stores.tokens.clone(),
                users: stores.users.clone(),
                minter: minter.clone(),
                audit: audit.clone(),
            },
            code_grant: AuthorizationCodeGrant {
                codes: stores.codes.clone(),
                tokens: stores.tokens.clone(),
                users: stores.users.clone(),
                minter,
                audit: audit.clone(),
            },
            revocations: RevocationList::new(stores.tokens.clone()),
            csrf,
            audit,
            config,
            stores,
            clock,
            random,
            secrets,
            passwords,
            clients,
            keys,
            partners,
            client_keys,
        })
    }

    /// The partners of the encrypted dialect (seed 002).
    pub fn partners(&self) -> &Partners {
        &self.partners
    }

    /// The keys clients sign their requests with (the signature dialects).
    pub fn client_keys(&self) -> &ClientKeys {
        &self.client_keys
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// The audit trail: for the edge and the CLI to record what the engine does not see.
    pub fn audit(&self) -> &Auditor {
        &self.audit
    }

    /// Password checks refused at once because the hashing pool and its queue were full.
    pub fn password_shed_total(&self) -> u64 {
        self.passwords.shed_total()
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    pub fn key_ring(&self) -> Arc<KeyRing> {
        self.keys.current()
    }

    /// Re-reads signing keys from the database (another process may have scheduled one).
    pub async fn reload_keys(&self) -> Result<(), EngineError> {
        self.keys.reload(self.now()).await
    }

    /// Schedules a new signing key. The old keys stay published for the longest access-token
    /// lifetime of any client: a token the old key signs just before the switch must
    /// validate until it expires.
    pub async fn rotate_signing_key(
        &self,
        rotation: KeyRotation,
    ) -> Result<RotationOutcome, EngineError> {
        let max_access_ttl = self
            .stores
            .clients
            .list_clients()
            .await?
            .iter()
            .map(|c| c.policy.access_ttl)
            .max()
            .unwrap_or(0);
        let now = self.now();
        let immediate = matches!(rotation, KeyRotation::DangerImmediate);
        let outcome = self
            .keys
            .rotate(&*self.random, now, rotation, max_access_ttl)
            .await?;
        if let RotationOutcome::Scheduled {
            kid,
            activates_at,
            old_keys_retire_at,
        } = &outcome
        {
            let detail = json!({
                "kid": kid,
                "activates_at": activates_at,
                "old_keys_retire_at": old_keys_retire_at,
                "immediate": immediate,
            });
            self.audit
                .emit(AuditEvent::new(now, AuditKind::KeyRotation, detail))
                .await;
        }
        Ok(outcome)
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
            GrantType::Password => &self.password_grant,
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
                .verify(token, &self.config.issuer, &self.config.audience, now)
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
                let family = self
                    .stores
                    .tokens
                    .find_family(sid)
                    .await
                    .map_err(unavailable)?;
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
            .stores
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
                TokenKind::Refresh => match self.stores.tokens.find_refresh_token(token).await? {
                    // §2.1: a refresh token takes its grant's access tokens with it: the family
                    // is what every one of them checks.
                    Some(state) => {
                        if state.family.client_id == client.client_id {
                            self.stores
                                .tokens
                                .revoke_family(&state.family.id, now)
                                .await?;
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
        match self.stores.tokens.find_access_token(token).await? {
            Some(state) => {
                if state.record.client_id == client.client_id {
                    self.stores.tokens.revoke_access(&state.record.hash).await?;
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
                    if let Some(state) = self.stores.tokens.find_refresh_token(token).await? {
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
                            audience: self.config.audience.clone(),
                            issuer: self.config.issuer.clone(),
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
        let list = self.stores.tokens.revoked_jwts_since(since, now).await?;
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
            audience: self.config.issuer.clone(),
            issuer: self.config.issuer.clone(),
            token_id: None,
        })
    }

    // ---- the authorization endpoint (RFC 6749 §4.1) ----

    /// Checks an authorization request: the client, its exact redirect URI, `response_type`,
    /// PKCE and scope. The outer error is the database's; the inner says where to answer.
    pub async fn validate_authorize(
        &self,
        request: &AuthorizeRequest,
    ) -> Result<Result<ValidAuthorize, AuthorizeError>, EngineError> {
        let client = match request.client_id.as_deref() {
            Some(id) => self.clients.find(id, self.now()).await?,
            None => None,
        };
        Ok(crate::authorize::validate(
            request,
            client.filter(|c| !c.disabled),
        ))
    }

    /// The login form's credential check: the password grant's Argon2id path (bounded pool,
    /// dummy hash for unknown users). `None` for any wrong credential or a disabled account,
    /// never saying which.
    pub async fn sign_in(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<Option<User>, EngineError> {
        self.sign_in_for(None, username, password).await
    }

    /// [`Engine::sign_in`] on behalf of `client_id` (the client of the authorization request),
    /// which the audit events name.
    pub async fn sign_in_for(
        &self,
        client_id: Option<&str>,
        username: &str,
        password: &SecretString,
    ) -> Result<Option<User>, EngineError> {
        let now = self.now();
        let event = |kind, subject: &str| {
            let mut e = AuditEvent::new(now, kind, json!({ "via": "login_form" })).subject(subject);
            e.client_id = client_id.map(str::to_owned);
            e
        };
        match self.password_grant.authenticate(username, password).await {
            Ok(user) => {
                self.audit
                    .emit(event(AuditKind::LoginSuccess, &user.id))
                    .await;
                Ok(Some(user))
            }
            Err(EngineError::OAuth(e)) => {
                self.audit
                    .emit(event(AuditKind::LoginFailure, username))
                    .await;
                // A locked name is said so (with how long), as every dialect says it: unknown
                // names lock alike, so this confirms no account.
                match e.retry_after() {
                    Some(_) => Err(EngineError::OAuth(e)),
                    None => Ok(None),
                }
            }
            Err(other) => Err(other),
        }
    }

    /// Issues a single-use code for a validated request and the signed-in user. Only its hash
    /// is stored. A user restricted to some scopes gets the request narrowed to them (RFC 6749
    /// §3.3 lets the server grant less; the token response says what was granted).
    pub async fn issue_code(
        &self,
        request: &ValidAuthorize,
        user: &User,
    ) -> Result<IssuedCode, EngineError> {
        let now = self.now();
        let scope = match &user.allowed_scopes {
            Some(allowed) => request
                .scope
                .iter()
                .filter(|s| allowed.contains(s))
                .collect(),
            None => request.scope.clone(),
        };
        let code = generate_token(&*self.random);
        let record = AuthCode {
            hash: token_hash(&code),
            client_id: request.client.client_id.clone(),
            subject: user.id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            scope,
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            auth_time: now,
            issued_at: now,
            expires_at: now + self.config.auth_code_ttl,
        };
        self.stores.codes.create_code(&record).await?;
        Ok(IssuedCode {
            code,
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
            expires_at: record.expires_at,
        })
    }

    /// The login form's CSRF guard.
    pub fn csrf(&self) -> &CsrfGuard {
        &self.csrf
    }

    /// A fresh CSRF cookie value.
    pub fn new_csrf_cookie(&self) -> String {
        self.csrf.new_cookie(&*self.random)
    }

    /// OpenID Connect Core §5.3: the user a bearer token speaks for, when it still exists.
    pub async fn userinfo(&self, principal: &Principal) -> Result<Option<User>, EngineError> {
        let user = self
            .stores
            .users
            .find_user_by_id(&principal.subject)
            .await?;
        Ok(user.filter(|u| !u.disabled))
    }

    // ---- administration (CLI, demo seeding) ----

    /// Registers a client. For a confidential client without a given secret, one is generated
    /// and returned: the only time it exists in the clear.
    pub async fn create_client(
        &self,
        mut client: Client,
        confidential: bool,
        secret: Option<SecretString>,
    ) -> Result<Option<String>, EngineError> {
        let generated = match (confidential, secret) {
            (false, Some(_)) => {
                return Err(OAuthError::invalid_request("a public client has no secret").into());
            }
            (false, None) => {
                client.secret_hash = None;
                None
            }
            (true, Some(s)) => {
                check_secret_strength(s.expose_secret())?;
                client.secret_hash = Some(self.secrets.hash(s.expose_secret()));
                None
            }
            (true, None) => {
                let s = generate_token(&*self.random);
                client.secret_hash = Some(self.secrets.hash(&s));
                Some(s)
            }
        };
        check_redirect_uris(&client)?;
        client.created_at = self.now();
        self.stores.clients.create_client(&client).await?;
        Ok(generated)
    }

    /// Replaces a confidential client's secret; returns the new one (printed once) or `None`
    /// when the client does not exist.
    pub async fn rotate_client_secret(
        &self,
        client_id: &str,
        secret: Option<SecretString>,
    ) -> Result<Option<String>, EngineError> {
        match self.stores.clients.find_client(client_id).await? {
            None => return Ok(None),
            Some(c) if c.is_public() => {
                return Err(OAuthError::invalid_request("a public client has no secret").into());
            }
            Some(_) => {}
        }
        let (hash, shown) = match secret {
            Some(s) => {
                check_secret_strength(s.expose_secret())?;
                (self.secrets.hash(s.expose_secret()), None)
            }
            None => {
                let s = generate_token(&*self.random);
                (self.secrets.hash(&s), Some(s))
            }
        };
        let found = self
            .stores
            .clients
            .set_client_secret_hash(client_id, &hash)
            .await?;
        self.clients.invalidate(client_id);
        Ok(found.then(|| shown.unwrap_or_default()))
    }

    pub async fn create_user(
        &self,
        username: &str,
        password: &SecretString,
        allowed_scopes: Option<ScopeSet>,
    ) -> Result<User, EngineError> {
        if username.is_empty() || password.expose_secret().is_empty() {
            return Err(
                OAuthError::invalid_request("username and password must not be empty").into(),
            );
        }
        let user = NewUser {
            id: format!("{USER_ID_PREFIX}{}", random_hex(&*self.random, 12)),
            username: username.to_owned(),
            password_hash: self.passwords.hash(password).await?,
            allowed_scopes,
            created_at: self.now(),
        };
        Ok(self.stores.users.create_user(&user).await?)
    }

    /// The failed sign-ins recorded for `username`, if any (`khoa user show`, tests).
    pub async fn login_failures(
        &self,
        username: &str,
    ) -> Result<Option<LoginFailures>, EngineError> {
        Ok(self
            .stores
            .login_failures
            .find_login_failures(username)
            .await?)
    }

    /// Lifts a lockout at once (`khoa user unlock`); returns whether there was anything to
    /// forget.
    pub async fn unlock_user(&self, username: &str) -> Result<bool, EngineError> {
        let cleared = self
            .stores
            .login_failures
            .clear_login_failures(username)
            .await?;
        // The CLI verb records its own `admin` event (`user.unlock`).
        Ok(cleared)
    }

    /// The password hasher, for tests that count its verifications.
    pub fn passwords(&self) -> &PasswordHasher {
        &self.passwords
    }

    pub async fn set_user_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<bool, EngineError> {
        let hash = self.passwords.hash(password).await?;
        Ok(self.stores.users.set_password_hash(username, &hash).await?)
    }
}

/// RFC 6749 §3.1.2: a redirect URI is absolute and has no fragment (and, stored
/// space-separated, has no space).
fn check_redirect_uris(client: &Client) -> Result<(), EngineError> {
    let well_formed = |u: &str| {
        let scheme = u.split_once(':').map(|(s, _)| s).unwrap_or_default();
        !scheme.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            && !u.contains('#')
            && !u.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if let Some(bad) = client.redirect_uris.iter().find(|u| !well_formed(u)) {
        return Err(OAuthError::invalid_request(format!(
            "redirect URI `{bad}` must be absolute, without spaces or a fragment"
        ))
        .into());
    }
    Ok(())
}

fn check_secret_strength(secret: &str) -> Result<(), EngineError> {
    if secret.chars().count() < MIN_CLIENT_SECRET_LEN {
        return Err(OAuthError::invalid_request(format!(
            "a client secret must be at least {MIN_CLIENT_SECRET_LEN} characters"
        ))
        .into());
    }
    Ok(())
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
