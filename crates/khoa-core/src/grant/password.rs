//! Resource Owner Password Credentials grant (RFC 6749 §4.3) — seed 004's flow.

use async_trait::async_trait;
use std::sync::Arc;

use super::{GrantHandler, TokenRequest, required, resolve_scope, wants_refresh};
use crate::clock::Clock;
use crate::error::{Detail, EngineError, OAuthError};
use crate::mint::{IssuedTokens, Minter};
use crate::model::{Client, UnixTime, User};
use crate::password::PasswordHasher;
use crate::store::{LockoutPolicy, LoginAttempt, LoginFailureStore, LoginFailures, UserStore};
use secrecy::SecretString;

pub struct PasswordGrant {
    pub(crate) users: Arc<dyn UserStore>,
    pub(crate) passwords: PasswordHasher,
    pub(crate) minter: Arc<Minter>,
    pub(crate) failures: Arc<dyn LoginFailureStore>,
    pub(crate) lockout: LockoutPolicy,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) audit: crate::audit::Auditor,
}

/// One message for every credential failure, so the answer does not tell which part was wrong.
const BAD_CREDENTIALS: &str = "the username or password is incorrect";

impl PasswordGrant {
    /// The one check of a username and password, shared with the authorization endpoint's
    /// login form: Argon2id on the bounded pool, the dummy hash for unknown users, and the
    /// lockout after repeated failures (OWASP Authentication Cheat Sheet, "Account Lockout").
    ///
    /// Every path runs exactly one Argon2id verification (unknown user, wrong password, locked
    /// account alike), so none can be told apart by its time.
    ///
    /// The order is what bounds the guesses: a place in the Argon2 pool first (an attempt
    /// shed for load is refused before anything is counted), then the attempt is reserved in
    /// the store, which counts it as a failure at once, atomically, on every node; only a
    /// reserved attempt has its password checked. Guesses sent together therefore get
    /// `threshold` checks, like guesses sent one by one (NIST SP 800-63B §5.2.2), instead of
    /// all being checked before the first failure is written. Unknown names take the same
    /// path, reservation included.
    pub(crate) async fn authenticate(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<User, EngineError> {
        let slot = self.passwords.slot().await?;
        // Read after the wait for the slot: the reservation is dated when the check runs.
        let now = self.clock.now();
        let reserved = if self.lockout.enabled() {
            match self
                .failures
                .reserve_login_attempt(username, now, &self.lockout)
                .await?
            {
                LoginAttempt::Reserved(state) => Some(state),
                LoginAttempt::Locked(locked) => {
                    // Refused whatever the password: the dummy hash only spends the usual time.
                    slot.verify(password, None).await?;
                    return Err(locked_error(&locked, now).into());
                }
            }
        } else {
            None
        };
        let user = self.users.find_user_by_username(username).await?;
        // Unknown users are checked against the dummy hash: same cost, same answer.
        let ok = slot
            .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
            .await?;
        match user {
            Some(u) if ok => {
                // The password was proven: the reservation and the failures before it were
                // the user's own.
                if reserved.is_some() {
                    self.failures.clear_login_failures(username).await?;
                }
                if u.disabled {
                    // Said only to whoever proved the password: it reveals nothing to a guesser.
                    return Err(OAuthError::invalid_grant("the account is disabled")
                        .with_detail(Detail::AccountDisabled)
                        .into());
                }
                Ok(u)
            }
            _ => {
                // The reservation already counted this failure; if it was the one that set
                // the lock, the lock is now earned.
                if let Some(state) = reserved
                    && let Some(until) = state.locked_until.filter(|_| state.locked_at(now))
                {
                    let detail = serde_json::json!({
                        "action": "lock",
                        "failures": state.failures,
                        "locked_until": until,
                    });
                    self.audit.lockout(Some(username), None, detail, now).await;
                }
                Err(OAuthError::invalid_grant(BAD_CREDENTIALS)
                    .with_detail(Detail::BadCredentials)
                    .into())
            }
        }
    }
}

/// The refusal of a locked account. The description tells a legitimate user what to do and
/// nothing more: unknown usernames are locked the same way, so it confirms no account.
fn locked_error(state: &LoginFailures, now: UnixTime) -> OAuthError {
    let retry_after_secs = state
        .locked_until
        .map_or(1, |until| (until - now).max(1) as u64);
    OAuthError::invalid_grant(
        "too many failed sign-ins: the account is temporarily locked, retry later",
    )
    .with_detail(Detail::TemporarilyLocked { retry_after_secs })
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
