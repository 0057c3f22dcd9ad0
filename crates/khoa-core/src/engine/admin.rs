//! Administration: clients, users, partners, signing and client keys, and reading the audit
//! trail — what `khoa client|user|partner|keys|audit …` and the demo's seeding do.
//!
//! Every change is recorded here as an `admin` audit event (its `detail.action` names the
//! verb, e.g. `client.add`) and waited for until durable: an admin action is rare, and the
//! CLI's process exits right after it. Recording them here rather than at the edge means any
//! caller — the CLI today, an admin API tomorrow — records the same events.

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::sync::Arc;
use zeroize::Zeroizing;

use crate::audit::Auditor;
use crate::client_cache::ClientCache;
use crate::client_key::{ClientKeys, KeyAlg};
use crate::clock::{Clock, Random};
use crate::error::{EngineError, OAuthError};
use crate::grant::refresh_token::USER_ID_PREFIX;
use crate::mint::{KeyRingHandle, KeyRotation, RotationOutcome};
use crate::model::{Client, UnixTime, User};
use crate::partner::Partners;
use crate::password::PasswordHasher;
use crate::scope::ScopeSet;
use crate::secret::{SecretHasher, generate_token, random_hex};
use crate::store::{
    AuditEvent, AuditFilter, AuditKind, AuditStore, ClientKey, ClientStore, KeyStore,
    LoginFailureStore, LoginFailures, NewUser, Partner, SigningKeyRecord, UserStore,
};

/// Operator-supplied client secrets must be at least this long: they are hashed with a fast
/// keyed hash, which is only safe for high-entropy secrets ([`SecretHasher`]).
pub const MIN_CLIENT_SECRET_LEN: usize = 32;

/// The administration side of the engine. Built by [`crate::engine::Engine::new`].
pub struct Administration {
    pub(super) clock: Arc<dyn Clock>,
    pub(super) random: Arc<dyn Random>,
    pub(super) secrets: SecretHasher,
    pub(super) passwords: PasswordHasher,
    /// The token side's client cache: a changed client is dropped from it at once.
    pub(super) clients: Arc<ClientCache>,
    pub(super) client_store: Arc<dyn ClientStore>,
    pub(super) users: Arc<dyn UserStore>,
    pub(super) login_failures: Arc<dyn LoginFailureStore>,
    pub(super) keys: Arc<KeyRingHandle>,
    pub(super) key_store: Arc<dyn KeyStore>,
    pub(super) partners: Partners,
    pub(super) client_keys: ClientKeys,
    pub(super) audit: Auditor,
    pub(super) audit_store: Arc<dyn AuditStore>,
    pub(super) operator: Option<String>,
}

/// A client key to add: an RSA public key as DER SPKI, stored as it is, or an HMAC shared
/// secret, sealed under the master key.
pub enum NewClientKey<'a> {
    RsaPublicKey(Vec<u8>),
    HmacSecret(&'a [u8]),
}

/// What `unlock_user` forgot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unlocked {
    /// Failed sign-ins on record.
    pub failures: u32,
    /// Whether they had locked the account.
    pub was_locked: bool,
}

impl Administration {
    fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Records an admin action and waits until it is durable. `subject` is a username,
    /// `client_id` the client acted on.
    async fn audited(
        &self,
        action: &str,
        subject: Option<&str>,
        client_id: Option<&str>,
        mut detail: serde_json::Value,
    ) {
        detail["action"] = action.into();
        if let Some(user) = &self.operator {
            detail["os_user"] = user.as_str().into();
        }
        let mut event = AuditEvent::new(self.now(), AuditKind::Admin, detail);
        event.subject = subject.map(str::to_owned);
        event.client_id = client_id.map(str::to_owned);
        self.audit.emit(event).await;
        self.audit.flush().await;
    }

    // ---- clients ----

    /// Ordered by client_id.
    pub async fn list_clients(&self) -> Result<Vec<Client>, EngineError> {
        Ok(self.client_store.list_clients().await?)
    }

    pub async fn find_client(&self, client_id: &str) -> Result<Option<Client>, EngineError> {
        Ok(self.client_store.find_client(client_id).await?)
    }

    /// Registers a client. For a confidential client without a given secret, one is generated
    /// and returned: the only time it exists in the clear.
    pub async fn create_client(
        &self,
        mut client: Client,
        confidential: bool,
        secret: Option<SecretString>,
    ) -> Result<Option<String>, EngineError> {
        let given = secret.is_some();
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
        self.client_store.create_client(&client).await?;
        let mut detail = json!({
            "public": !confidential,
            "grant_types": client.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            "scopes": client.allowed_scopes.to_string(),
        });
        if confidential {
            detail["secret"] = if given { "given" } else { "generated" }.into();
        }
        self.audited("client.add", None, Some(&client.client_id), detail)
            .await;
        Ok(generated)
    }

    /// Replaces a confidential client's secret; returns the new one (printed once; empty when
    /// it was given) or `None` when the client does not exist.
    pub async fn rotate_client_secret(
        &self,
        client_id: &str,
        secret: Option<SecretString>,
    ) -> Result<Option<String>, EngineError> {
        match self.client_store.find_client(client_id).await? {
            None => return Ok(None),
            Some(c) if c.is_public() => {
                return Err(OAuthError::invalid_request("a public client has no secret").into());
            }
            Some(_) => {}
        }
        let given = secret.is_some();
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
            .client_store
            .set_client_secret_hash(client_id, &hash)
            .await?;
        self.clients.invalidate(client_id);
        if found {
            let detail = json!({ "secret": if given { "given" } else { "generated" } });
            self.audited("client.rotate_secret", None, Some(client_id), detail)
                .await;
        }
        Ok(found.then(|| shown.unwrap_or_default()))
    }

    /// Removes a client and its signature keys (a client made later under the same id must
    /// not inherit them); `false` when there is no such client.
    pub async fn remove_client(&self, client_id: &str) -> Result<bool, EngineError> {
        if !self.client_store.delete_client(client_id).await? {
            return Ok(false);
        }
        self.clients.invalidate(client_id);
        self.client_keys.remove_all(client_id).await?;
        self.audited("client.remove", None, Some(client_id), json!({}))
            .await;
        Ok(true)
    }

    // ---- the keys clients sign requests with ----

    /// Adds a key `client_id` signs its requests with; returns its kid.
    pub async fn add_client_key(
        &self,
        client_id: &str,
        kid: Option<String>,
        material: NewClientKey<'_>,
    ) -> Result<String, EngineError> {
        let (kid, alg) = match material {
            NewClientKey::RsaPublicKey(der) => {
                let kid = self.client_keys.add_public_key(client_id, kid, der).await?;
                (kid, KeyAlg::Rs256)
            }
            NewClientKey::HmacSecret(secret) => {
                let kid = self
                    .client_keys
                    .add_hmac_secret(client_id, kid, secret)
                    .await?;
                (kid, KeyAlg::Hmac)
            }
        };
        let detail = json!({ "kid": kid, "alg": alg.as_str() });
        self.audited("client.key_add", None, Some(client_id), detail)
            .await;
        Ok(kid)
    }

    /// The keys of `client_id`, newest first; `None` when there is no such client.
    pub async fn client_keys(
        &self,
        client_id: &str,
    ) -> Result<Option<Vec<ClientKey>>, EngineError> {
        if self.client_store.find_client(client_id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.client_keys.list(client_id).await?))
    }

    /// Removes key `kid` of `client_id`; `false` when there is none.
    pub async fn remove_client_key(&self, client_id: &str, kid: &str) -> Result<bool, EngineError> {
        let removed = self.client_keys.remove(client_id, kid).await?;
        if removed {
            let detail = json!({ "kid": kid });
            self.audited("client.key_remove", None, Some(client_id), detail)
                .await;
        }
        Ok(removed)
    }

    // ---- users ----

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
        let user = self.users.create_user(&user).await?;
        let detail = json!({ "user_id": user.id });
        self.audited("user.add", Some(&user.username), None, detail)
            .await;
        Ok(user)
    }

    /// Ordered by username.
    pub async fn list_users(&self) -> Result<Vec<User>, EngineError> {
        Ok(self.users.list_users().await?)
    }

    /// Replaces a user's password; `false` when there is no such user.
    pub async fn set_user_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<bool, EngineError> {
        let hash = self.passwords.hash(password).await?;
        let changed = self.users.set_password_hash(username, &hash).await?;
        if changed {
            self.audited("user.set_password", Some(username), None, json!({}))
                .await;
        }
        Ok(changed)
    }

    /// Disables (or enables again) a user; `false` when there is no such user.
    pub async fn set_user_disabled(
        &self,
        username: &str,
        disabled: bool,
    ) -> Result<bool, EngineError> {
        let changed = self.users.set_user_disabled(username, disabled).await?;
        if changed {
            let action = if disabled {
                "user.disable"
            } else {
                "user.enable"
            };
            self.audited(action, Some(username), None, json!({})).await;
        }
        Ok(changed)
    }

    /// `false` when there is no such user.
    pub async fn remove_user(&self, username: &str) -> Result<bool, EngineError> {
        let removed = self.users.delete_user(username).await?;
        if removed {
            self.audited("user.remove", Some(username), None, json!({}))
                .await;
        }
        Ok(removed)
    }

    /// The failed sign-ins recorded for `username`, if any (`khoa user show`, tests).
    pub async fn login_failures(
        &self,
        username: &str,
    ) -> Result<Option<LoginFailures>, EngineError> {
        Ok(self.login_failures.find_login_failures(username).await?)
    }

    /// Lifts a lockout at once (`khoa user unlock`): forgets the failed sign-ins of
    /// `username`; `None` when there were none.
    pub async fn unlock_user(&self, username: &str) -> Result<Option<Unlocked>, EngineError> {
        let state = self.login_failures.find_login_failures(username).await?;
        let was_locked = state.as_ref().is_some_and(|s| s.locked_at(self.now()));
        if !self.login_failures.clear_login_failures(username).await? {
            return Ok(None);
        }
        let unlocked = Unlocked {
            failures: state.map_or(0, |s| s.failures),
            was_locked,
        };
        let detail = json!({ "failures": unlocked.failures, "was_locked": was_locked });
        self.audited("user.unlock", Some(username), None, detail)
            .await;
        Ok(Some(unlocked))
    }

    // ---- signing keys ----

    /// In activation order.
    pub async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, EngineError> {
        Ok(self.key_store.list_keys().await?)
    }

    /// Schedules a new signing key. The old keys stay published for the longest access-token
    /// lifetime of any client: a token the old key signs just before the switch must
    /// validate until it expires.
    pub async fn rotate_signing_key(
        &self,
        rotation: KeyRotation,
    ) -> Result<RotationOutcome, EngineError> {
        let max_access_ttl = self
            .client_store
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
            let detail = json!({ "kid": kid, "immediate": immediate });
            self.audited("keys.rotate", None, None, detail).await;
        }
        Ok(outcome)
    }

    // ---- partners of the encrypted dialect (seed 002) ----

    /// Registers a partner bound to `client_id`; returns its first key as hex, the only time
    /// it exists in the clear. The key is generated unless given (the demo's published key).
    pub async fn add_partner(
        &self,
        code: &str,
        name: &str,
        client_id: &str,
        key: Option<[u8; 32]>,
    ) -> Result<Zeroizing<String>, EngineError> {
        let hex = self.partners.create(code, name, client_id, key).await?;
        let detail = json!({ "partner_code": code });
        self.audited("partner.add", None, Some(client_id), detail)
            .await;
        Ok(hex)
    }

    pub async fn list_partners(&self) -> Result<Vec<Partner>, EngineError> {
        self.partners.list().await
    }

    /// Makes a fresh key current; the previous ones keep opening envelopes for `overlap` more
    /// seconds. `None` for an unknown partner.
    pub async fn rotate_partner_key(
        &self,
        code: &str,
        overlap: i64,
    ) -> Result<Option<Zeroizing<String>>, EngineError> {
        let rotated = self.partners.rotate_key(code, overlap).await?;
        if rotated.is_some() {
            let detail = json!({ "partner_code": code, "overlap_secs": overlap });
            self.audited("partner.rotate_key", None, None, detail).await;
        }
        Ok(rotated)
    }

    /// `false` for an unknown partner.
    pub async fn remove_partner(&self, code: &str) -> Result<bool, EngineError> {
        let removed = self.partners.remove(code).await?;
        if removed {
            let detail = json!({ "partner_code": code });
            self.audited("partner.remove", None, None, detail).await;
        }
        Ok(removed)
    }

    // ---- the audit trail ----

    /// Newest first, as filtered.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, EngineError> {
        Ok(self.audit_store.list_audit(filter).await?)
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
