//! Minting: turning a decided grant into tokens and committing them before anyone sees them.

use std::sync::{Arc, RwLock};

use crate::clock::{Clock, Random};
use crate::error::EngineError;
use crate::keys::{AccessTokenClaims, KeyRing, generate_key};
use crate::master_key::MasterKey;
use crate::model::{AccessTokenFormat, Client, UnixTime};
use crate::scope::ScopeSet;
use crate::secret::{generate_token, random_hex, redacted, token_hash};
use crate::store::{AccessRecord, Family, Issuance, KeyStore, RefreshRecord, TokenStore};

/// What a successful grant hands to the dialect that renders it.
#[derive(Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: Option<String>,
    pub refresh_expires_in: Option<i64>,
    pub scope: ScopeSet,
    pub subject: String,
    pub client_id: String,
}

impl IssuedTokens {
    /// RFC 6750: every token khoa issues is a bearer token.
    pub const TOKEN_TYPE: &'static str = "Bearer";
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("access_token", &redacted(&self.access_token))
            .field("expires_in", &self.expires_in)
            .field(
                "refresh_token",
                &self.refresh_token.as_deref().map(redacted),
            )
            .field("scope", &self.scope)
            .field("subject", &self.subject)
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// The node's view of the signing keys, reloadable when another process rotates them.
pub struct KeyRingHandle {
    store: Arc<dyn KeyStore>,
    master: MasterKey,
    ring: RwLock<Arc<KeyRing>>,
}

impl KeyRingHandle {
    /// Loads the keys, generating the first one if the database has none. Concurrent first
    /// starts race in [`KeyStore::insert_first_key`] and all end up with the winner's key.
    pub async fn open(
        store: Arc<dyn KeyStore>,
        master: MasterKey,
        random: &dyn Random,
        now: UnixTime,
    ) -> Result<Self, EngineError> {
        if !store
            .list_keys()
            .await?
            .iter()
            .any(|k| k.status == crate::store::KeyStatus::Current)
        {
            store
                .insert_first_key(&generate_key(random, &master, now))
                .await?;
        }
        let ring = KeyRing::load(&store.list_keys().await?, &master)?;
        Ok(KeyRingHandle {
            store,
            master,
            ring: RwLock::new(Arc::new(ring)),
        })
    }

    pub fn current(&self) -> Arc<KeyRing> {
        self.ring.read().expect("key ring lock poisoned").clone()
    }

    /// Re-reads the keys from the store (after a rotation by the CLI or another node).
    pub async fn reload(&self) -> Result<(), EngineError> {
        let ring = KeyRing::load(&self.store.list_keys().await?, &self.master)?;
        *self.ring.write().expect("key ring lock poisoned") = Arc::new(ring);
        Ok(())
    }

    /// Makes a fresh key current; the old one stays published as `previous`.
    pub async fn rotate(&self, random: &dyn Random, now: UnixTime) -> Result<String, EngineError> {
        let rec = generate_key(random, &self.master, now);
        self.store.rotate_key(&rec).await?;
        self.reload().await?;
        Ok(rec.kid)
    }
}

/// A freshly minted access token.
pub(crate) struct MintedAccess {
    pub(crate) token: String,
    /// To store before answering (opaque tokens); `None` for a self-contained JWT.
    pub(crate) record: Option<AccessRecord>,
    pub(crate) expires_in: i64,
}

/// Shared by every grant: builds access and refresh tokens per the client's policy and commits
/// them in one store write.
pub struct Minter {
    pub(crate) tokens: Arc<dyn TokenStore>,
    pub(crate) keys: Arc<KeyRingHandle>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn Random>,
    pub(crate) issuer: String,
    pub(crate) audience: String,
}

impl Minter {
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// An access token per `client.policy.access_format`, never outliving its session; for
    /// opaque tokens also the record that must be stored before the token is handed out.
    pub(crate) fn access_token(
        &self,
        client: &Client,
        subject: &str,
        scope: &ScopeSet,
        session: Option<(&str, UnixTime)>,
        now: UnixTime,
    ) -> Result<MintedAccess, EngineError> {
        let family_id = session.map(|(id, _)| id);
        let expires_at = match session {
            Some((_, end)) => (now + client.policy.access_ttl).min(end),
            None => now + client.policy.access_ttl,
        };
        let minted = |token, record| MintedAccess {
            token,
            record,
            expires_in: expires_at - now,
        };
        match client.policy.access_format {
            AccessTokenFormat::Jwt => {
                let claims = AccessTokenClaims {
                    iss: self.issuer.clone(),
                    sub: subject.to_owned(),
                    aud: self.audience.clone(),
                    exp: expires_at,
                    iat: now,
                    jti: random_hex(&*self.random, 16),
                    client_id: client.client_id.clone(),
                    scope: scope.to_string(),
                    sid: family_id.map(str::to_owned),
                };
                Ok(minted(self.keys.current().sign(&claims)?, None))
            }
            AccessTokenFormat::Opaque => {
                let token = generate_token(&*self.random);
                let record = AccessRecord {
                    hash: token_hash(&token),
                    client_id: client.client_id.clone(),
                    subject: subject.to_owned(),
                    scope: scope.clone(),
                    family_id: family_id.map(str::to_owned),
                    issued_at: now,
                    expires_at,
                };
                Ok(minted(token, Some(record)))
            }
        }
    }

    /// Issues a new grant: an access token, and a refresh token starting a new family when
    /// `with_refresh`. Returns only after the store committed what must be stored.
    pub async fn issue(
        &self,
        client: &Client,
        subject: &str,
        scope: ScopeSet,
        with_refresh: bool,
    ) -> Result<IssuedTokens, EngineError> {
        let now = self.now();
        let policy = &client.policy;
        let mut issuance = Issuance::default();
        let mut refresh_token = None;
        let mut refresh_expires_in = None;
        if with_refresh {
            let family = Family {
                id: format!("fam_{}", random_hex(&*self.random, 16)),
                client_id: client.client_id.clone(),
                subject: subject.to_owned(),
                scope: scope.clone(),
                created_at: now,
                session_expires_at: now + policy.session_lifetime,
                revoked_at: None,
            };
            let token = generate_token(&*self.random);
            let expires_at = (now + policy.refresh_ttl).min(family.session_expires_at);
            issuance.refresh = Some(RefreshRecord {
                hash: token_hash(&token),
                family_id: family.id.clone(),
                issued_at: now,
                expires_at,
            });
            issuance.family = Some(family);
            refresh_token = Some(token);
            refresh_expires_in = Some(expires_at - now);
        }
        let session = issuance
            .family
            .as_ref()
            .map(|f| (f.id.clone(), f.session_expires_at));
        let access = self.access_token(
            client,
            subject,
            &scope,
            session.as_ref().map(|(id, end)| (id.as_str(), *end)),
            now,
        )?;
        issuance.access = access.record;
        // A JWT-only answer stores nothing: it is verifiable offline and dies on its own.
        if issuance.family.is_some() || issuance.access.is_some() {
            self.tokens.issue(&issuance).await?;
        }
        Ok(IssuedTokens {
            access_token: access.token,
            expires_in: access.expires_in,
            refresh_token,
            refresh_expires_in,
            scope,
            subject: subject.to_owned(),
            client_id: client.client_id.clone(),
        })
    }
}
