//! Resource Owner Password Credentials grant (RFC 6749 §4.3) — seed 004's flow.

use async_trait::async_trait;
use std::sync::Arc;

use super::{GrantHandler, TokenRequest, required, resolve_scope, wants_refresh};
use crate::error::{Detail, EngineError, OAuthError};
use crate::mint::{IssuedTokens, Minter};
use crate::model::{Client, User};
use crate::password::PasswordHasher;
use crate::store::UserStore;
use secrecy::SecretString;

pub struct PasswordGrant {
    pub(crate) users: Arc<dyn UserStore>,
    pub(crate) passwords: PasswordHasher,
    pub(crate) minter: Arc<Minter>,
}

/// One message for every credential failure, so the answer does not tell which part was wrong.
const BAD_CREDENTIALS: &str = "the username or password is incorrect";

impl PasswordGrant {
    /// The one check of a username and password, shared with the authorization endpoint's
    /// login form: Argon2id on the bounded pool, and the dummy hash for unknown users.
    pub(crate) async fn authenticate(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<User, EngineError> {
        let user = self.users.find_user_by_username(username).await?;
        // Unknown users are checked against the dummy hash: same cost, same answer.
        let ok = self
            .passwords
            .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
            .await?;
        match user {
            Some(u) if ok && !u.disabled => Ok(u),
            // Said only to whoever proved the password: it reveals nothing to a guesser.
            Some(u) if ok && u.disabled => {
                Err(OAuthError::invalid_grant("the account is disabled")
                    .with_detail(Detail::AccountDisabled)
                    .into())
            }
            _ => Err(OAuthError::invalid_grant(BAD_CREDENTIALS)
                .with_detail(Detail::BadCredentials)
                .into()),
        }
    }
}

#[async_trait]
impl GrantHandler for PasswordGrant {
    async fn handle(
        &self,
        client: &Client,
        request: &TokenRequest,
    ) -> Result<IssuedTokens, EngineError> {
        let username = required(&request.username, "username")?;
        let password = required(&request.password, "password")?;
        let user = self.authenticate(username, password).await?;
        let scope = resolve_scope(
            request.scope.as_deref(),
            client,
            user.allowed_scopes.as_ref(),
        )?;
        let with_refresh = wants_refresh(client, &scope);
        let grantee = self.minter.grantee(client, &user.id, &user.username);
        self.minter
            .issue(client, &grantee, scope, with_refresh)
            .await
    }
}
