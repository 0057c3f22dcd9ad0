//! Authorization: the authorization endpoint (RFC 6749 §4.1) — checking a request, the login
//! form's sign-in and CSRF guard, issuing the single-use code the token endpoint redeems.

use secrecy::SecretString;
use serde_json::json;
use std::sync::Arc;

use crate::audit::Auditor;
use crate::authorize::{AuthorizeError, AuthorizeRequest, CsrfGuard, IssuedCode, ValidAuthorize};
use crate::client_cache::ClientCache;
use crate::clock::{Clock, Random};
use crate::error::EngineError;
use crate::grant::password::PasswordGrant;
use crate::model::{UnixTime, User};
use crate::secret::{generate_token, token_hash};
use crate::store::{AuditEvent, AuditKind, AuthCode, AuthCodeStore};

/// The authorization side of the engine. Built by [`crate::engine::Engine::new`].
pub struct Authorization {
    pub(super) clock: Arc<dyn Clock>,
    pub(super) random: Arc<dyn Random>,
    pub(super) clients: Arc<ClientCache>,
    /// The password grant's credential check, shared so that the form and the grant cost the
    /// same and lock out alike.
    pub(super) password_grant: Arc<PasswordGrant>,
    pub(super) codes: Arc<dyn AuthCodeStore>,
    pub(super) auth_code_ttl: i64,
    pub(super) csrf: CsrfGuard,
    pub(super) audit: Auditor,
}

impl Authorization {
    fn now(&self) -> UnixTime {
        self.clock.now()
    }

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

    /// [`Authorization::sign_in`] on behalf of `client_id` (the client of the authorization
    /// request), which the audit events name.
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
            expires_at: now + self.auth_code_ttl,
        };
        self.codes.create_code(&record).await?;
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
}
