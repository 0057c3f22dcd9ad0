//! The engine's side of the audit trail: what each event says, and the rule that recording
//! one never fails or delays the request that caused it beyond queueing the row.
//!
//! Every event also goes to the `khoa::audit` tracing target at `debug` (`KHOA_LOG=info,
//! khoa::audit=debug`), so an operator who ships logs can see the trail without reading the
//! table. Not at `info`: a token issuance already logs its request line there, and a second
//! line per token measurably slows the token endpoints. Neither carries a secret: tokens are
//! named by a SHA-256 prefix or a `jti`, passwords and client secrets never appear.

use serde_json::json;
use std::sync::Arc;

use crate::model::UnixTime;
use crate::store::{AuditEvent, AuditKind, AuditStore};

/// Records audit events into an [`AuditStore`]. Cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    store: Arc<dyn AuditStore>,
    node: Option<String>,
}

impl Auditor {
    pub fn new(store: Arc<dyn AuditStore>, node: Option<String>) -> Auditor {
        Auditor { store, node }
    }

    /// Queues `event`. A store that cannot take it is logged, not returned: the token was
    /// already issued (or refused) and durable; failing the request now would only make the
    /// client retry a request that succeeded.
    pub async fn emit(&self, mut event: AuditEvent) {
        if event.node.is_none() {
            event.node.clone_from(&self.node);
        }
        tracing::debug!(
            target: "khoa::audit",
            kind = event.kind.as_str(),
            subject = event.subject.as_deref().unwrap_or("-"),
            client_id = event.client_id.as_deref().unwrap_or("-"),
            detail = %event.detail,
            "audit"
        );
        if let Err(e) = self.store.record(event).await {
            tracing::warn!(error = %e, "recording an audit event failed");
        }
    }

    /// Waits until every event emitted so far is durable (the CLI, before it exits).
    pub async fn flush(&self) {
        if let Err(e) = self.store.flush().await {
            tracing::warn!(error = %e, "flushing audit events failed");
        }
    }

    /// A redeemed refresh token or authorization code presented again: the reuse, and the
    /// family revocation it caused (RFC 9700 §4.14.2, RFC 6749 §4.1.2).
    pub async fn reuse(
        &self,
        subject: &str,
        client_id: &str,
        family_id: &str,
        what: &str,
        revoked: bool,
        now: UnixTime,
    ) {
        let event = |kind| {
            AuditEvent::new(
                now,
                kind,
                json!({ "family_id": family_id, "presented": what }),
            )
            .subject(subject)
            .client(client_id)
        };
        self.emit(event(AuditKind::RefreshReuse)).await;
        if revoked {
            self.emit(event(AuditKind::FamilyRevoked)).await;
        }
    }

    /// An account (`subject`) or a client locked out after repeated failures. For the lockout
    /// policy to call; `detail` says why and until when.
    pub async fn lockout(
        &self,
        subject: Option<&str>,
        client_id: Option<&str>,
        detail: serde_json::Value,
        now: UnixTime,
    ) {
        let mut event = AuditEvent::new(now, AuditKind::Lockout, detail);
        event.subject = subject.map(str::to_owned);
        event.client_id = client_id.map(str::to_owned);
        self.emit(event).await;
    }
}

/// The first 12 hex digits of a token's SHA-256: enough to match an event to a stored hash,
/// nothing a bearer can use.
pub fn token_ref(token: &str) -> String {
    let mut hash = crate::secret::token_hash(token);
    hash.truncate(12);
    hash
}
