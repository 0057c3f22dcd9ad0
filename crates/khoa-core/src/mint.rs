//! Minting: turning a decided grant into tokens and committing them before anyone sees them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use crate::clock::{Clock, Random};
use crate::error::EngineError;
use crate::keys::{
    ACCESS_TOKEN_TYP, AccessTokenClaims, ID_TOKEN_TYP, IdTokenClaims, KeyRing, REFRESH_TOKEN_TYP,
    RefreshTokenClaims, generate_key,
};
use crate::master_key::MasterKey;
use crate::model::{AccessTokenFormat, Client, RefreshTokenFormat, UnixTime};
use crate::scope::ScopeSet;
use crate::secret::{
    generate_stored_token, key_hash, random_alnum, random_hex, random_upper, redacted,
    stored_token_key, token_hash,
};
use crate::store::{
    AccessRecord, Family, IfKeyPending, Issuance, KeySchedule, KeyStore, RefreshRecord, TokenStore,
};

/// What a successful grant hands to the dialect that renders it.
#[derive(Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: Option<String>,
    pub refresh_expires_in: Option<i64>,
    /// Seed 000's second secret, required beside the bearer token on mutating requests.
    pub otp_token: Option<String>,
    pub scope: ScopeSet,
    pub subject: String,
    pub client_id: String,
    /// OpenID Connect Core §3.1.3.3: present when an authorization code granted `openid`.
    pub id_token: Option<String>,
    /// How the audit trail names these tokens without their secrets.
    pub refs: TokenRefs,
}

/// Names for issued tokens that carry nothing a bearer could use: a JWT's `jti`, or the first
/// hex digits of a stored token's SHA-256 (its stored hash, which the audit reuses rather than
/// hashing the token again).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRefs {
    /// The access token's `jti` when it is a JWT.
    pub access_jti: Option<String>,
    /// Otherwise the prefix of its stored hash.
    pub access_hash: Option<String>,
    /// The prefix of the refresh token's stored hash.
    pub refresh_hash: Option<String>,
}

/// The first 12 hex digits of the SHA-256 in a stored token's key (as
/// [`crate::audit::token_ref`] gives for the token): enough to match an event to the stored
/// row, nothing a bearer can use.
pub fn hash_ref(key: &str) -> String {
    let hash = key_hash(key);
    hash.get(..12).unwrap_or(hash).to_owned()
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
            .field("id_token", &self.id_token.as_deref().map(redacted))
            .finish()
    }
}

/// The node's view of the signing keys, reloadable when another process rotates them.
pub struct KeyRingHandle {
    store: Arc<dyn KeyStore>,
    master: MasterKey,
    ring: RwLock<Arc<KeyRing>>,
    /// When a token with an unknown `kid` last made us re-read the keys; bounds how often a
    /// stream of forged `kid`s can send us to the database.
    last_unknown_kid_reload: AtomicI64,
}

/// At most one unknown-`kid` reload per this many seconds.
const UNKNOWN_KID_RELOAD_INTERVAL: i64 = 5;

/// The shortest lifetime a rotation assumes for tokens the old key signed, whatever the
/// clients' policies say: ID tokens (one hour, the usual choice) will be signed by the same
/// keys.
pub const MIN_SIGNED_TOKEN_LIFETIME: i64 = 3600;
/// Clock skew allowed between the node that signed a token and the one that validates it.
pub const KEY_RETIREMENT_SKEW: i64 = 60;

/// How a new signing key takes over from the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRotation {
    /// The new key is published at once and signs from `lead_secs` on; the old keys stay
    /// published until every token they may still sign has expired. `lead_secs` must cover
    /// how long JWKS caches and nodes take to learn of the new key (the caller checks that:
    /// the engine does not know the edge's cache settings).
    After { lead_secs: u64 },
    /// For a compromised key: the new key signs at once and every other key, a pending one
    /// included, is retired at once, so every token they signed stops validating. Caches and
    /// nodes that have not yet seen the new key refuse its tokens until they do.
    DangerImmediate,
}

/// What [`KeyRingHandle::rotate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotationOutcome {
    Scheduled {
        kid: String,
        activates_at: UnixTime,
        /// When the keys it replaces stop being published and accepted.
        old_keys_retire_at: UnixTime,
    },
    /// Refused: an earlier rotation's key is still waiting to activate.
    Pending { kid: String, activates_at: UnixTime },
}

impl KeyRingHandle {
    /// Loads the keys, generating the first one if none is published. Concurrent first starts
    /// race in [`KeyStore::insert_first_key`] and all end up with the winner's key.
    pub async fn open(
        store: Arc<dyn KeyStore>,
        master: MasterKey,
        random: &dyn Random,
        now: UnixTime,
    ) -> Result<Self, EngineError> {
        if !store.list_keys().await?.iter().any(|k| k.published_at(now)) {
            store
                .insert_first_key(&generate_key(random, &master, now, now))
                .await?;
        }
        let ring = KeyRing::load(&store.list_keys().await?, &master, now)?;
        Ok(KeyRingHandle {
            store,
            master,
            ring: RwLock::new(Arc::new(ring)),
            last_unknown_kid_reload: AtomicI64::new(i64::MIN),
        })
    }

    pub fn current(&self) -> Arc<KeyRing> {
        self.ring.read().expect("key ring lock poisoned").clone()
    }

    /// Re-reads the keys from the store (a rotation scheduled by the CLI or another node).
    pub async fn reload(&self, now: UnixTime) -> Result<(), EngineError> {
        let ring = KeyRing::load(&self.store.list_keys().await?, &self.master, now)?;
        *self.ring.write().expect("key ring lock poisoned") = Arc::new(ring);
        Ok(())
    }

    /// Re-reads the keys because a token names a `kid` we do not know, at most once per
    /// `UNKNOWN_KID_RELOAD_INTERVAL`; returns whether it did.
    pub async fn reload_for_unknown_kid(&self, now: UnixTime) -> bool {
        let last = self.last_unknown_kid_reload.load(Ordering::Relaxed);
        if now.saturating_sub(last) < UNKNOWN_KID_RELOAD_INTERVAL
            || self
                .last_unknown_kid_reload
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        match self.reload(now).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "reloading keys for an unknown kid failed");
                false
            }
        }
    }

    /// Schedules a fresh key per `rotation`. `max_token_lifetime` is the longest lifetime of a
    /// token the current key may sign before the switch; the old keys stay published that long
    /// after it (at least [`MIN_SIGNED_TOKEN_LIFETIME`], plus [`KEY_RETIREMENT_SKEW`]).
    pub async fn rotate(
        &self,
        random: &dyn Random,
        now: UnixTime,
        rotation: KeyRotation,
        max_token_lifetime: i64,
    ) -> Result<RotationOutcome, EngineError> {
        let (activates_at, old_keys_retire_at, if_pending) = match rotation {
            KeyRotation::After { lead_secs } => {
                let activates_at = now.saturating_add(i64::try_from(lead_secs).unwrap_or(i64::MAX));
                let lifetime = max_token_lifetime.max(MIN_SIGNED_TOKEN_LIFETIME);
                let retire = activates_at
                    .saturating_add(lifetime)
                    .saturating_add(KEY_RETIREMENT_SKEW);
                (activates_at, retire, IfKeyPending::Refuse)
            }
            KeyRotation::DangerImmediate => (now, now, IfKeyPending::Retire),
        };
        let rec = generate_key(random, &self.master, now, activates_at);
        let outcome = match self
            .store
            .schedule_key(&rec, old_keys_retire_at, now, if_pending)
            .await?
        {
            KeySchedule::Pending { kid, activates_at } => {
                return Ok(RotationOutcome::Pending { kid, activates_at });
            }
            KeySchedule::Scheduled => RotationOutcome::Scheduled {
                kid: rec.kid,
                activates_at,
                old_keys_retire_at,
            },
        };
        self.reload(now).await?;
        Ok(outcome)
    }
}

/// A freshly minted access token.
pub(crate) struct MintedAccess {
    pub(crate) token: String,
    /// To store before answering (stored formats); `None` for a self-contained JWT.
    pub(crate) record: Option<AccessRecord>,
    pub(crate) expires_in: i64,
    /// The second secret bound to this access token, when the policy asks for one.
    pub(crate) otp_token: Option<String>,
    /// Its `jti`, when it is a JWT.
    pub(crate) jti: Option<String>,
}

impl MintedAccess {
    /// The audit trail's names for this token and, if any, the refresh token hashed `refresh`.
    pub(crate) fn refs(&self, refresh_hash: Option<&str>) -> TokenRefs {
        TokenRefs {
            access_jti: self.jti.clone(),
            access_hash: self.record.as_ref().map(|r| hash_ref(&r.hash)),
            refresh_hash: refresh_hash.map(hash_ref),
        }
    }
}

/// Who tokens are minted for and how account-shaped tokens (seed 000) are labelled.
#[derive(Clone, Debug)]
pub(crate) struct Grantee {
    /// `sub` of the tokens: a user id, or the client id for client-only grants.
    pub(crate) subject: String,
    /// The login name shown in `ACCOUNT||KEYID||…` tokens.
    pub(crate) account: String,
    /// The `KEYID` of that layout: one per session, shared by its access and refresh tokens.
    pub(crate) key_id: String,
}

/// The refresh-token family an access token belongs to.
#[derive(Clone, Copy)]
pub(crate) struct SessionRef<'a> {
    pub(crate) id: &'a str,
    pub(crate) ends_at: UnixTime,
}

/// Splits `ACCOUNT||KEYID||RANDOM`; the account may itself contain `||`, the random part and
/// key id never do.
pub fn parse_account_token(token: &str) -> Option<(&str, &str)> {
    let mut parts = token.rsplitn(3, "||");
    let _random = parts.next()?;
    let key_id = parts.next()?;
    let account = parts.next()?;
    (!account.is_empty() && !key_id.is_empty()).then_some((account, key_id))
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

/// Length of the random part of `ACCOUNT||KEYID||RANDOM` tokens, about the document's.
const ACCOUNT_TOKEN_RANDOM_LEN: usize = 200;

impl Minter {
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The grantee of a new session. A `KEYID` is drawn only when the client's policy makes
    /// account-shaped tokens: every other issuance skips the random draw.
    pub(crate) fn grantee(&self, client: &Client, subject: &str, account: &str) -> Grantee {
        let policy = &client.policy;
        let account_shaped = policy.access_format == AccessTokenFormat::Account
            || policy.refresh_format == RefreshTokenFormat::Account;
        Grantee {
            subject: subject.to_owned(),
            account: account.to_owned(),
            key_id: if account_shaped {
                random_upper(&*self.random, 10)
            } else {
                String::new()
            },
        }
    }

    /// An access token per `client.policy.access_format`, never outliving its session; for
    /// stored formats also the record that must be committed before the token is handed out.
    pub(crate) fn access_token(
        &self,
        client: &Client,
        grantee: &Grantee,
        scope: &ScopeSet,
        session: Option<SessionRef<'_>>,
        now: UnixTime,
    ) -> Result<MintedAccess, EngineError> {
        let policy = &client.policy;
        let expires_at = match session {
            Some(s) => (now + policy.access_ttl).min(s.ends_at),
            None => now + policy.access_ttl,
        };
        let family_id = session.map(|s| s.id.to_owned());
        let otp_token = policy.otp.then(|| random_hex(&*self.random, 16));
        let otp_hash = otp_token.as_deref().map(token_hash);
        let token = match policy.access_format {
            AccessTokenFormat::Jwt => {
                let jti = random_hex(&*self.random, 16);
                let claims = AccessTokenClaims {
                    iss: self.issuer.clone(),
                    sub: grantee.subject.clone(),
                    aud: self.audience.clone(),
                    exp: expires_at,
                    iat: now,
                    jti: jti.clone(),
                    client_id: client.client_id.clone(),
                    scope: scope.to_string(),
                    sid: family_id,
                    otp_sha256: otp_hash,
                };
                let token = self.keys.current().sign(ACCESS_TOKEN_TYP, &claims, now)?;
                return Ok(MintedAccess {
                    token,
                    record: None,
                    expires_in: expires_at - now,
                    otp_token,
                    jti: Some(jti),
                });
            }
            AccessTokenFormat::Opaque => {
                generate_stored_token(&*self.random, self.clock.now_millis())
            }
            AccessTokenFormat::Hex40 => random_hex(&*self.random, 20),
            AccessTokenFormat::Account => self.account_token(grantee),
        };
        let record = AccessRecord {
            hash: stored_token_key(&token),
            client_id: client.client_id.clone(),
            subject: grantee.subject.clone(),
            scope: scope.clone(),
            family_id,
            issued_at: now,
            expires_at,
            otp_hash,
        };
        Ok(MintedAccess {
            token,
            record: Some(record),
            expires_in: expires_at - now,
            otp_token,
            jti: None,
        })
    }

    fn account_token(&self, grantee: &Grantee) -> String {
        format!(
            "{}||{}||{}",
            grantee.account,
            grantee.key_id,
            random_alnum(&*self.random, ACCOUNT_TOKEN_RANDOM_LEN)
        )
    }

    /// A refresh token per `client.policy.refresh_format` and its record.
    pub(crate) fn refresh_token(
        &self,
        client: &Client,
        grantee: &Grantee,
        session: SessionRef<'_>,
        now: UnixTime,
    ) -> Result<(String, RefreshRecord), EngineError> {
        let expires_at = (now + client.policy.refresh_ttl).min(session.ends_at);
        let token = match client.policy.refresh_format {
            RefreshTokenFormat::Opaque => {
                generate_stored_token(&*self.random, self.clock.now_millis())
            }
            RefreshTokenFormat::Account => self.account_token(grantee),
            RefreshTokenFormat::Jwt => {
                let claims = RefreshTokenClaims {
                    iss: self.issuer.clone(),
                    sub: grantee.subject.clone(),
                    exp: expires_at,
                    iat: now,
                    jti: random_hex(&*self.random, 16),
                    client_id: client.client_id.clone(),
                    sid: session.id.to_owned(),
                };
                self.keys.current().sign(REFRESH_TOKEN_TYP, &claims, now)?
            }
        };
        let record = RefreshRecord {
            hash: stored_token_key(&token),
            family_id: session.id.to_owned(),
            issued_at: now,
            expires_at,
        };
        Ok((token, record))
    }

    /// Issues a new grant: an access token, and a refresh token starting a new family when
    /// `with_refresh`. Returns only after the store committed what must be stored.
    pub(crate) async fn issue(
        &self,
        client: &Client,
        grantee: &Grantee,
        scope: ScopeSet,
        with_refresh: bool,
    ) -> Result<IssuedTokens, EngineError> {
        let (issuance, tokens) = self.prepare(
            client,
            grantee,
            scope,
            with_refresh,
            with_refresh,
            self.now(),
        )?;
        // A JWT-only answer stores nothing: it is verifiable offline and dies on its own.
        if issuance.family.is_some() || issuance.access.is_some() {
            self.tokens.issue(&issuance).await?;
        }
        Ok(tokens)
    }

    /// Builds the tokens of a new grant and what must be stored for them, without storing it:
    /// [`Minter::issue`] commits it alone, the code grant together with the code's redemption.
    /// `with_family` starts a family (session) even without a refresh token, so that revoking
    /// it also stops the access token (its `sid`).
    pub(crate) fn prepare(
        &self,
        client: &Client,
        grantee: &Grantee,
        scope: ScopeSet,
        with_refresh: bool,
        with_family: bool,
        now: UnixTime,
    ) -> Result<(Issuance, IssuedTokens), EngineError> {
        let policy = &client.policy;
        let mut issuance = Issuance::default();
        let mut refresh = None;
        if with_refresh || with_family {
            let family = Family {
                id: format!("fam_{}", random_hex(&*self.random, 16)),
                client_id: client.client_id.clone(),
                subject: grantee.subject.clone(),
                scope: scope.clone(),
                created_at: now,
                session_expires_at: now + policy.session_lifetime,
                revoked_at: None,
            };
            if with_refresh {
                let session = SessionRef {
                    id: &family.id,
                    ends_at: family.session_expires_at,
                };
                let (token, record) = self.refresh_token(client, grantee, session, now)?;
                refresh = Some((token, record.expires_at - now));
                issuance.refresh = Some(record);
            }
            issuance.family = Some(family);
        }
        let session = issuance.family.as_ref().map(|f| SessionRef {
            id: &f.id,
            ends_at: f.session_expires_at,
        });
        let access = self.access_token(client, grantee, &scope, session, now)?;
        let refs = access.refs(issuance.refresh.as_ref().map(|r| r.hash.as_str()));
        issuance.access = access.record;
        let (refresh_token, refresh_expires_in) = refresh.unzip();
        let tokens = IssuedTokens {
            access_token: access.token,
            expires_in: access.expires_in,
            refresh_token,
            refresh_expires_in,
            otp_token: access.otp_token,
            scope,
            subject: grantee.subject.clone(),
            client_id: client.client_id.clone(),
            id_token: None,
            refs,
        };
        Ok((issuance, tokens))
    }

    /// OpenID Connect Core §2 ID token for `client`, signed with the access tokens' key ring.
    pub(crate) fn id_token(
        &self,
        client: &Client,
        subject: &str,
        auth_time: UnixTime,
        nonce: Option<&str>,
        now: UnixTime,
    ) -> Result<String, EngineError> {
        let claims = IdTokenClaims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: client.client_id.clone(),
            exp: now + client.policy.access_ttl,
            iat: now,
            auth_time,
            nonce: nonce.map(str::to_owned),
        };
        self.keys.current().sign(ID_TOKEN_TYP, &claims, now)
    }
}
