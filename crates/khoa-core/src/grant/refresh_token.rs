//! Refresh Token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2).
//!
//! The rules, in the order they are applied:
//! 1. An unknown, foreign (other client), revoked or expired token → `invalid_grant`.
//! 2. A live token is rotated by one atomic conditional update in the store: of any number of
//!    concurrent redemptions, across nodes, exactly one wins and creates the successor.
//! 3. The losers, and later retries, find the token used. Inside the client's reuse window they
//!    get the same successor (opened from its seal with the presented token) and a fresh
//!    access token; outside it — or with the window at 0 — the whole family is revoked.

use async_trait::async_trait;
use secrecy::ExposeSecret;
use std::sync::Arc;

use super::{GrantHandler, TokenRequest, required};
use crate::error::{EngineError, OAuthError};
use crate::mint::{Grantee, IssuedTokens, Minter, SessionRef, parse_account_token};
use crate::model::Client;
use crate::scope::ScopeSet;
use crate::secret::{open_successor, seal_successor};
use crate::store::{Issuance, RefreshState, RotateOutcome, Rotation, TokenStore, UserStore};

/// Subjects of user-owned families carry this prefix, so that a refresh can check the user
/// still exists and is enabled.
pub const USER_ID_PREFIX: &str = "usr_";

pub struct RefreshTokenGrant {
    pub(crate) tokens: Arc<dyn TokenStore>,
    pub(crate) users: Arc<dyn UserStore>,
    pub(crate) minter: Arc<Minter>,
    pub(crate) audit: crate::audit::Auditor,
}

fn invalid() -> EngineError {
    OAuthError::invalid_grant("the refresh token is invalid, expired or revoked").into()
}

#[async_trait]
impl GrantHandler for RefreshTokenGrant {
    async fn handle(
        &self,
        client: &Client,
        request: &TokenRequest,
    ) -> Result<IssuedTokens, EngineError> {
        let presented = required(&request.refresh_token, "refresh_token")?.expose_secret();
        let now = self.minter.now();
        let state = self
            .tokens
            .find_refresh_token(presented)
            .await?
            .ok_or_else(invalid)?;
        let family = &state.family;
        // A token bound to another client is treated as unknown (RFC 6749 §6, §10.4).
        if family.client_id != client.client_id || family.revoked_at.is_some() {
            return Err(invalid());
        }
        // Replay is judged first: a spent token is evidence of theft whatever else is wrong
        // with the request (RFC 9700 §4.14.2), so no later check may hide it.
        let state = if state.used_at.is_none() {
            if state.expires_at <= now || family.session_expires_at <= now {
                return Err(invalid());
            }
            let scope = narrowed_scope(request, &family.scope)?;
            self.check_owner_still_active(&family.subject).await?;
            match self.rotate(client, presented, &state, &scope, now).await? {
                Ok(issued) => return Ok(issued),
                Err(latest) => latest,
            }
        } else {
            state
        };
        self.redeem_again(client, presented, &state, request, now)
            .await
    }
}

/// Account-shaped tokens keep the account and key id of the session they continue.
fn grantee_of(m: &Minter, client: &Client, presented: &str, subject: &str) -> Grantee {
    match parse_account_token(presented) {
        Some((account, key_id)) => Grantee {
            subject: subject.to_owned(),
            account: account.to_owned(),
            key_id: key_id.to_owned(),
        },
        None => m.grantee(client, subject, subject),
    }
}

/// RFC 6749 §6: the new access token may be narrower, never wider, than the original grant.
fn narrowed_scope(request: &TokenRequest, granted: &ScopeSet) -> Result<ScopeSet, EngineError> {
    match request.scope.as_deref().map(ScopeSet::parse) {
        None => Ok(granted.clone()),
        Some(Ok(s)) if s.is_empty() => Ok(granted.clone()),
        Some(Ok(s)) if s.is_subset(granted) => Ok(s),
        Some(_) => Err(OAuthError::invalid_scope(
            "a refresh may narrow the original scope, never widen it",
        )
        .into()),
    }
}

impl RefreshTokenGrant {
    async fn check_owner_still_active(&self, subject: &str) -> Result<(), EngineError> {
        if subject.starts_with(USER_ID_PREFIX) {
            match self.users.find_user_by_id(subject).await? {
                Some(u) if !u.disabled => {}
                _ => return Err(invalid()),
            }
        }
        Ok(())
    }

    /// Tries to win the rotation. `Ok(Ok(tokens))` when this call created the successor;
    /// `Ok(Err(state))` when another redemption got there first.
    async fn rotate(
        &self,
        client: &Client,
        presented: &str,
        state: &RefreshState,
        scope: &ScopeSet,
        now: i64,
    ) -> Result<Result<IssuedTokens, RefreshState>, EngineError> {
        let m = &self.minter;
        let family = &state.family;
        let grantee = grantee_of(m, client, presented, &family.subject);
        let session = SessionRef {
            id: &family.id,
            ends_at: family.session_expires_at,
        };
        let (successor, record) = m.refresh_token(client, &grantee, session, now)?;
        let expires_at = record.expires_at;
        let access = m.access_token(client, &grantee, scope, Some(session), now)?;
        let refs = access.refs(Some(&record.hash));
        let rotation = Rotation {
            old_hash: state.hash.clone(),
            used_at: now,
            successor: record,
            successor_sealed: seal_successor(&*m.random, presented, &successor),
            access: access.record,
        };
        match self.tokens.rotate(&rotation).await? {
            RotateOutcome::Rotated => Ok(Ok(IssuedTokens {
                access_token: access.token,
                expires_in: access.expires_in,
                refresh_token: Some(successor),
                refresh_expires_in: Some(expires_at - now),
                otp_token: access.otp_token,
                scope: scope.clone(),
                subject: family.subject.clone(),
                client_id: client.client_id.clone(),
                id_token: None,
                refs,
            })),
            RotateOutcome::AlreadyUsed(latest) => Ok(Err(latest)),
            RotateOutcome::Revoked | RotateOutcome::NotFound => Err(invalid()),
        }
    }

    /// The token was already redeemed: hand out the same successor inside the reuse window,
    /// otherwise treat it as replay and revoke the family.
    async fn redeem_again(
        &self,
        client: &Client,
        presented: &str,
        state: &RefreshState,
        request: &TokenRequest,
        now: i64,
    ) -> Result<IssuedTokens, EngineError> {
        let family = &state.family;
        let window = client.policy.reuse_window;
        let used_at = state.used_at.unwrap_or(now);
        let in_window = window > 0 && now - used_at <= window;
        let successor = match (&state.successor_hash, &state.successor_sealed) {
            (Some(h), Some(sealed)) if in_window => Some((h, sealed)),
            _ => None,
        };
        let Some((successor_hash, sealed)) = successor else {
            let revoked = self.tokens.revoke_family(&family.id, now).await?;
            if revoked {
                tracing::warn!(
                    family = %family.id,
                    client_id = %client.client_id,
                    "refresh token reused outside the retry window; family revoked"
                );
            }
            self.audit
                .reuse(
                    &family.subject,
                    &client.client_id,
                    &family.id,
                    "refresh_token",
                    revoked,
                    now,
                )
                .await;
            return Err(invalid());
        };
        let successor = open_successor(presented, sealed)
            .ok_or_else(|| EngineError::internal("sealed successor does not open"))?;
        let next = self
            .tokens
            .find_refresh(successor_hash)
            .await?
            .ok_or_else(invalid)?;
        // If the successor itself has moved on, this is a stale duplicate: refuse it, but it is
        // no evidence of theft, so the family lives.
        if next.used_at.is_some() || next.family.revoked_at.is_some() || next.expires_at <= now {
            return Err(invalid());
        }
        let scope = narrowed_scope(request, &family.scope)?;
        self.check_owner_still_active(&family.subject).await?;
        let m = &self.minter;
        let grantee = grantee_of(m, client, presented, &family.subject);
        let session = SessionRef {
            id: &family.id,
            ends_at: family.session_expires_at,
        };
        let access = m.access_token(client, &grantee, &scope, Some(session), now)?;
        let refs = access.refs(Some(successor_hash));
        if access.record.is_some() {
            let issuance = Issuance {
                access: access.record,
                ..Issuance::default()
            };
            self.tokens.issue(&issuance).await?;
        }
        Ok(IssuedTokens {
            access_token: access.token,
            expires_in: access.expires_in,
            refresh_token: Some(successor),
            refresh_expires_in: Some(next.expires_at - now),
            otp_token: access.otp_token,
            scope,
            subject: family.subject.clone(),
            client_id: client.client_id.clone(),
            id_token: None,
            refs,
        })
    }
}
