//! Revocation (RFC 7009) and introspection (RFC 7662): what a client may revoke, how a revoked
//! JWT is refused although its signature stays good, and what an introspection reports.
//!
//! Opaque access tokens are simply deleted. Refresh tokens take their whole family with them
//! (and, through `sid`, every JWT minted in it). A JWT access token cannot be recalled, so its
//! `jti` goes on a revocation list kept until the token's `exp`; every node holds the list in
//! memory and polls the store for additions, which keeps the JWT hot path free of database
//! round trips.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use crate::model::UnixTime;
use crate::scope::ScopeSet;
use crate::store::{RevokedJwt, StoreError, TokenStore};

/// How often a node looks for JWTs revoked elsewhere. Another node's revocation takes effect
/// here within about this long; this node's own revocations take effect at once.
pub const POLL_SECS: i64 = 1;

/// Revocations are polled from a little before the last poll, so that one recorded by a node
/// whose clock lags ours, or committed just after our read began, is not missed. Re-reading an
/// entry is harmless.
const POLL_OVERLAP_SECS: i64 = 60;

/// If the list could not be refreshed for this long, JWT validation fails closed (503) rather
/// than accept tokens that may have been revoked since.
const STALE_MAX_SECS: i64 = 30;

/// The in-memory revocation list of one node.
pub struct RevocationList {
    tokens: Arc<dyn TokenStore>,
    /// `jti` → `exp` of the revoked token.
    revoked: RwLock<HashMap<String, UnixTime>>,
    /// When the last successful poll started.
    synced_at: AtomicI64,
    /// Held by the one request that polls; the others carry on with the list as it is.
    polling: tokio::sync::Mutex<()>,
}

impl RevocationList {
    pub fn new(tokens: Arc<dyn TokenStore>) -> Self {
        RevocationList {
            tokens,
            revoked: RwLock::new(HashMap::new()),
            synced_at: AtomicI64::new(i64::MIN),
            polling: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the JWT `jti` was revoked, here or (up to [`POLL_SECS`] ago) on any node.
    pub async fn is_revoked(&self, jti: &str, now: UnixTime) -> Result<bool, StoreError> {
        let synced = self.synced_at.load(Ordering::Acquire);
        if now.saturating_sub(synced) >= POLL_SECS {
            self.poll(synced, now).await?;
        }
        let list = self.revoked.read().expect("revocation list lock poisoned");
        Ok(list.contains_key(jti))
    }

    /// Records a revocation made by this node and makes it effective here at once.
    pub async fn revoke(&self, entry: RevokedJwt) -> Result<(), StoreError> {
        self.tokens.revoke_jwt(&entry).await?;
        self.revoked
            .write()
            .expect("revocation list lock poisoned")
            .insert(entry.jti, entry.expires_at);
        Ok(())
    }

    async fn poll(&self, synced: UnixTime, now: UnixTime) -> Result<(), StoreError> {
        // Single flight: whoever gets the lock polls; the rest use the current list unless it
        // has gone stale, in which case they wait for the poll in progress.
        let stale = now.saturating_sub(synced) > STALE_MAX_SECS;
        let _guard = match self.polling.try_lock() {
            Ok(g) => g,
            Err(_) if !stale => return Ok(()),
            Err(_) => self.polling.lock().await,
        };
        let synced = self.synced_at.load(Ordering::Acquire);
        if now.saturating_sub(synced) < POLL_SECS {
            return Ok(()); // polled by someone else while we waited
        }
        let since = synced.saturating_sub(POLL_OVERLAP_SECS);
        match self.tokens.revoked_jwts_since(since, now).await {
            Ok(entries) => {
                let mut list = self.revoked.write().expect("revocation list lock poisoned");
                list.retain(|_, exp| *exp > now);
                list.extend(entries.into_iter().map(|e| (e.jti, e.expires_at)));
                self.synced_at.store(now, Ordering::Release);
                Ok(())
            }
            Err(e) if !stale => {
                tracing::warn!(error = %e, "polling the JWT revocation list failed; using the last one");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// RFC 7009 §2.1 / RFC 7662 §2.1: `token_type_hint` only orders the search; an unknown or
/// wrong hint costs a second lookup, never a wrong answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    /// The kinds to try, the hinted one first.
    pub fn search_order(hint: Option<&str>) -> [TokenKind; 2] {
        match hint {
            Some("refresh_token") => [TokenKind::Refresh, TokenKind::Access],
            _ => [TokenKind::Access, TokenKind::Refresh],
        }
    }
}

/// What RFC 7662 §2.2 reports about an active token. An inactive one is reported as
/// `{"active": false}` and nothing else, so that nothing is learned about invalid tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Introspection {
    pub kind: TokenKind,
    pub scope: ScopeSet,
    pub client_id: String,
    pub subject: String,
    pub expires_at: UnixTime,
    pub issued_at: UnixTime,
    pub audience: String,
    pub issuer: String,
    /// `jti` of a JWT access token.
    pub token_id: Option<String>,
}
