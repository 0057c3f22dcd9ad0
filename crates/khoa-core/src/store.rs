//! The storage contract: one trait per aggregate, implemented by `khoa-store` for SQLite and
//! PostgreSQL and, behind the `testing` feature, by `testing::MemoryStore` for the engine's
//! tests. `khoa-store`'s conformance suite holds all three to it.
//!
//! Every write method is atomic: it either commits all it describes or nothing, and it has
//! committed (durably) before it returns `Ok`. Callers rely on that to answer a client only
//! once its token exists.

use async_trait::async_trait;
use std::sync::Arc;

use crate::model::{Client, UnixTime, User};
use crate::scope::ScopeSet;
use crate::secret::{legacy_token_key, stored_token_key};

/// Errors a store reports. Constraint violations are named so the edge can answer 409/400
/// instead of 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was violated; the payload names what collided (e.g. `username`).
    #[error("already exists: {0}")]
    Conflict(String),
    /// The database could not be reached or is shutting down; a retry may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else (corrupt row, failed migration…). Logged with its cause, answered as 500.
    #[error(transparent)]
    Other(StoreFailure),
}

impl StoreError {
    /// A failure with nothing underneath (a broken invariant of the store).
    pub fn other(context: impl Into<String>) -> Self {
        StoreError::Other(StoreFailure {
            context: context.into(),
            source: None,
        })
    }

    /// A failure caused by `source` (the driver's error, say), kept so that the log line
    /// can say what failed and where ([`std::error::Error::source`]).
    pub fn caused(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Other(StoreFailure {
            context: context.into(),
            source: Some(Arc::new(source)),
        })
    }
}

/// What failed in a store, and why: `context` says what the store was doing, `source` is the
/// driver's error, not flattened to text. Shared (`Arc`) because a failed write batch answers
/// every job in it with the same error. Two failures are equal when they say the same.
#[derive(Debug, Clone)]
pub struct StoreFailure {
    context: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "storage error: {}", self.context)
    }
}

impl std::error::Error for StoreFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

impl PartialEq for StoreFailure {
    fn eq(&self, other: &Self) -> bool {
        self.context == other.context
            && self.source.as_ref().map(ToString::to_string)
                == other.source.as_ref().map(ToString::to_string)
    }
}

impl Eq for StoreFailure {}

/// A user to create. The password is already hashed.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub allowed_scopes: Option<ScopeSet>,
    pub created_at: UnixTime,
}

impl NewUser {
    /// The user as stored: enabled.
    pub fn to_user(&self) -> User {
        User {
            id: self.id.clone(),
            username: self.username.clone(),
            password_hash: self.password_hash.clone(),
            disabled: false,
            allowed_scopes: self.allowed_scopes.clone(),
            created_at: self.created_at,
        }
    }
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// `Conflict("username")` when the username is taken.
    async fn create_user(&self, user: &NewUser) -> Result<User, StoreError>;
    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError>;
    async fn find_user_by_id(&self, id: &str) -> Result<Option<User>, StoreError>;
    /// Ordered by username.
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// Returns whether a user was changed.
    async fn set_password_hash(&self, username: &str, hash: &str) -> Result<bool, StoreError>;
    async fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<bool, StoreError>;
    async fn delete_user(&self, username: &str) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait ClientStore: Send + Sync {
    /// `Conflict("client_id")` when the id is taken.
    async fn create_client(&self, client: &Client) -> Result<(), StoreError>;
    async fn find_client(&self, client_id: &str) -> Result<Option<Client>, StoreError>;
    /// Ordered by client_id.
    async fn list_clients(&self) -> Result<Vec<Client>, StoreError>;
    /// Replaces the secret hash; returns whether the client exists.
    async fn set_client_secret_hash(&self, client_id: &str, hash: &str)
    -> Result<bool, StoreError>;
    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError>;
}

/// A refresh-token family: every refresh token descending from one grant. Revoking the family
/// kills all of them and every opaque or JWT access token issued from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Family {
    pub id: String,
    pub client_id: String,
    /// `sub` of the tokens: the user id, or the client id for client-only grants.
    pub subject: String,
    /// The scope granted when the family was created; refreshes may narrow, never widen.
    pub scope: ScopeSet,
    pub created_at: UnixTime,
    /// Absolute end of the session (policy `session_lifetime`).
    pub session_expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// A refresh token to store. `hash` is its key from [`crate::secret::stored_token_key`]: the
/// token's lowercase hex SHA-256, after its issue time for the 43-character shape. The token
/// itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRecord {
    pub hash: String,
    pub family_id: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A stored refresh token with its family and rotation state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshState {
    pub hash: String,
    pub family: Family,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    /// When it was redeemed; `None` while it is the family's live token.
    pub used_at: Option<UnixTime>,
    pub successor_hash: Option<String>,
    /// The successor token, encrypted under a key derived from this (redeemed) token, so that a
    /// retry inside the reuse window can be given the same successor while the database alone
    /// cannot reveal it ([`crate::secret::seal_successor`]).
    pub successor_sealed: Option<Vec<u8>>,
}

/// An opaque access token to store (its key from [`crate::secret::stored_token_key`] only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRecord {
    pub hash: String,
    pub client_id: String,
    pub subject: String,
    pub scope: ScopeSet,
    pub family_id: Option<String>,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    /// SHA-256 (hex) of the `otp_token` bound to this access token, if any.
    pub otp_hash: Option<String>,
}

/// A stored opaque access token and whether its family has been revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessState {
    pub record: AccessRecord,
    pub revoked: bool,
}

/// A revoked JWT access token (RFC 7009 §2): kept until it would have expired anyway, so that
/// validators can refuse it by `jti` although its signature is still good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedJwt {
    pub jti: String,
    pub expires_at: UnixTime,
    pub revoked_at: UnixTime,
}

/// Everything one token response creates, written in one transaction.
#[derive(Clone, Debug, Default)]
pub struct Issuance {
    pub family: Option<Family>,
    pub refresh: Option<RefreshRecord>,
    pub access: Option<AccessRecord>,
}

/// One refresh-token rotation: mark `old_hash` used and store its successor, atomically and
/// only if `old_hash` is still unused and its family is live.
#[derive(Clone, Debug)]
pub struct Rotation {
    pub old_hash: String,
    pub used_at: UnixTime,
    pub successor: RefreshRecord,
    pub successor_sealed: Vec<u8>,
    pub access: Option<AccessRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per refresh; boxing would cost an allocation for no gain"
)]
pub enum RotateOutcome {
    /// This call won: the successor is stored.
    Rotated,
    /// Someone redeemed the token first (now or earlier); its current state is attached.
    AlreadyUsed(RefreshState),
    /// The family is revoked.
    Revoked,
    NotFound,
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn issue(&self, issuance: &Issuance) -> Result<(), StoreError>;
    async fn find_refresh(&self, hash: &str) -> Result<Option<RefreshState>, StoreError>;
    /// The single atomic conditional update that keeps a family from forking: of N concurrent
    /// calls for one `old_hash`, across any number of processes, at most one returns `Rotated`.
    async fn rotate(&self, rotation: &Rotation) -> Result<RotateOutcome, StoreError>;
    /// Returns whether a live family was revoked by this call.
    async fn revoke_family(&self, family_id: &str, at: UnixTime) -> Result<bool, StoreError>;
    async fn find_family(&self, family_id: &str) -> Result<Option<Family>, StoreError>;
    async fn find_access(&self, hash: &str) -> Result<Option<AccessState>, StoreError>;
    /// Deletes one stored (opaque) access token: RFC 7009 revocation. Returns whether it existed.
    async fn revoke_access(&self, hash: &str) -> Result<bool, StoreError>;
    /// Adds a JWT access token to the revocation list (idempotent: a second call changes
    /// nothing).
    async fn revoke_jwt(&self, revoked: &RevokedJwt) -> Result<(), StoreError>;
    /// The revocation list's entries with `revoked_at >= since` that have not expired at `now`,
    /// for validators that keep the list in memory and poll for additions.
    async fn revoked_jwts_since(
        &self,
        since: UnixTime,
        now: UnixTime,
    ) -> Result<Vec<RevokedJwt>, StoreError>;
    /// Deletes up to `batch` expired rows (access tokens past `expires_at`, refresh tokens and
    /// families past their session end, revocation-list entries past the token's `exp`,
    /// authorization codes past `expires_at`) and returns how many went.
    async fn purge_expired(&self, now: UnixTime, batch: u32) -> Result<u64, StoreError>;

    /// [`TokenStore::find_refresh`] by the presented token: under its stored key
    /// ([`stored_token_key`]), and on a miss under the key an earlier khoa stored it with.
    async fn find_refresh_token(&self, token: &str) -> Result<Option<RefreshState>, StoreError> {
        if let Some(found) = self.find_refresh(&stored_token_key(token)).await? {
            return Ok(Some(found));
        }
        match legacy_token_key(token) {
            Some(key) => self.find_refresh(&key).await,
            None => Ok(None),
        }
    }

    /// [`TokenStore::find_access`] by the presented token, as [`TokenStore::find_refresh_token`].
    async fn find_access_token(&self, token: &str) -> Result<Option<AccessState>, StoreError> {
        if let Some(found) = self.find_access(&stored_token_key(token)).await? {
            return Ok(Some(found));
        }
        match legacy_token_key(token) {
            Some(key) => self.find_access(&key).await,
            None => Ok(None),
        }
    }
}

/// An authorization code to store (RFC 6749 §4.1.2). `hash` is the lowercase hex SHA-256 of
/// the code; the code itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthCode {
    pub hash: String,
    pub client_id: String,
    /// The user who signed in.
    pub subject: String,
    /// The `redirect_uri` of the authorization request, which the token request must repeat
    /// exactly (RFC 6749 §4.1.3).
    pub redirect_uri: String,
    pub scope: ScopeSet,
    /// RFC 7636 §4.2 `S256` challenge: BASE64URL(SHA256(code_verifier)).
    pub code_challenge: String,
    /// OpenID Connect Core §3.1.2.1 `nonce`, echoed in the ID token.
    pub nonce: Option<String>,
    /// When the user authenticated (OpenID Connect `auth_time`).
    pub auth_time: UnixTime,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A stored authorization code and whether it was redeemed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthCodeState {
    pub code: AuthCode,
    pub used_at: Option<UnixTime>,
    /// The token family the redemption created.
    pub family_id: Option<String>,
}

/// What an attempt to redeem an authorization code came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedeemOutcome {
    /// This call won: the code is marked used and the issuance is stored.
    Redeemed,
    /// The code was redeemed before (now or earlier); the family that redemption created, so
    /// that the engine can revoke it (RFC 6749 §4.1.2, RFC 9700 §4.2.4).
    AlreadyUsed {
        family_id: Option<String>,
    },
    NotFound,
}

#[async_trait]
pub trait AuthCodeStore: Send + Sync {
    async fn create_code(&self, code: &AuthCode) -> Result<(), StoreError>;
    async fn find_code(&self, hash: &str) -> Result<Option<AuthCodeState>, StoreError>;
    /// In ONE transaction: marks the code used (only if it is still unused) with the family of
    /// `issuance`, and stores `issuance`. A crash can leave neither a used code without its
    /// tokens nor tokens from a code still redeemable; of N concurrent calls for one code,
    /// across any number of processes, at most one returns `Redeemed`.
    ///
    /// `issuance.family` must be set: every code redemption starts a family, so that reuse can
    /// revoke it.
    async fn redeem_code(
        &self,
        hash: &str,
        used_at: UnixTime,
        issuance: &Issuance,
    ) -> Result<RedeemOutcome, StoreError>;
}

/// Where a signing key stands at some instant. Not stored: it follows from the key's
/// `activates_at` and `retires_at` and the other keys' (see [`crate::keys::key_states`]), so
/// every node reading the same rows reaches the same answer at the same instant without any
/// coordination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Published in JWKS ahead of its activation; signs nothing yet.
    Next,
    /// Signs new tokens: the published key with the latest `activates_at` not after now.
    Current,
    /// No longer signs; still published so that tokens it signed keep validating.
    Previous,
    /// Past its `retires_at`: neither published nor accepted.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Current => "current",
            KeyState::Previous => "previous",
            KeyState::Retired => "retired",
        }
    }
}

/// A signing key as stored: the private half sealed under the master key, and its schedule.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    /// JOSE algorithm name, e.g. `EdDSA`.
    pub alg: String,
    pub private_sealed: Vec<u8>,
    /// The public JWK as JSON text.
    pub public_jwk: String,
    pub created_at: UnixTime,
    /// From this instant on the key may sign (if no later-activated key is published).
    pub activates_at: UnixTime,
    /// From this instant on the key is neither published nor accepted; `None`: open-ended.
    pub retires_at: Option<UnixTime>,
}

impl SigningKeyRecord {
    /// Whether the key is still published (and its tokens accepted) at `now`.
    pub fn published_at(&self, now: UnixTime) -> bool {
        self.retires_at.is_none_or(|r| now < r)
    }
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .field("retires_at", &self.retires_at)
            .finish_non_exhaustive()
    }
}

/// What a request to schedule a new signing key does when another scheduled key has not
/// activated yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfKeyPending {
    /// Schedule nothing and report the pending key: one rotation at a time, so that the
    /// schedule every cache was told about stays true.
    Refuse,
    /// Retire the pending key too (a compromised key is being replaced at once).
    Retire,
}

/// The outcome of [`KeyStore::schedule_key`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySchedule {
    Scheduled,
    /// Nothing changed: this key is published but activates only at `activates_at`.
    Pending {
        kid: String,
        activates_at: UnixTime,
    },
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Inserts `key` only if no key is published at `key.activates_at`; returns whether it
    /// did. Nodes starting together on an empty database race here and exactly one wins.
    async fn insert_first_key(&self, key: &SigningKeyRecord) -> Result<bool, StoreError>;
    /// Atomically: unless `if_pending` is `Refuse` and a published key activates after `now`
    /// (then nothing changes and that key is reported), brings the `retires_at` of every
    /// published key forward to `retire_others_at` (never later than it already is) and
    /// inserts `key`. A taken kid is `Conflict("kid")` and changes nothing.
    async fn schedule_key(
        &self,
        key: &SigningKeyRecord,
        retire_others_at: UnixTime,
        now: UnixTime,
        if_pending: IfKeyPending,
    ) -> Result<KeySchedule, StoreError>;
    /// Deletes the keys whose `retires_at` is at or before `before`; returns how many went.
    async fn delete_retired_keys(&self, before: UnixTime) -> Result<u64, StoreError>;
    /// In activation order (insertion order among keys activating in the same second).
    async fn list_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
}

/// One AES key of a partner (seed 002), sealed under the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct PartnerKey {
    pub key_id: String,
    pub sealed: Vec<u8>,
    pub created_at: UnixTime,
    /// `None` while the key is current; after a rotation, the end of its overlap.
    pub expires_at: Option<UnixTime>,
}

impl std::fmt::Debug for PartnerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerKey")
            .field("key_id", &self.key_id)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A partner of the encrypted dialect: its `Partner-Code`, the client its logins act for, and
/// its keys, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partner {
    pub code: String,
    pub name: String,
    pub client_id: String,
    pub created_at: UnixTime,
    pub keys: Vec<PartnerKey>,
}

#[async_trait]
pub trait PartnerStore: Send + Sync {
    /// Creates the partner with its first key (`partner.keys[0]`); `Conflict("partner_code")`
    /// when the code is taken.
    async fn create_partner(&self, partner: &Partner) -> Result<(), StoreError>;
    /// The partner with all its keys, newest first.
    async fn find_partner(&self, code: &str) -> Result<Option<Partner>, StoreError>;
    /// Ordered by code.
    async fn list_partners(&self) -> Result<Vec<Partner>, StoreError>;
    /// Atomically sets `expires_at = old_keys_expire_at` on every current key of the partner
    /// and adds `key` as current. Returns whether the partner exists.
    async fn add_partner_key(
        &self,
        code: &str,
        key: &PartnerKey,
        old_keys_expire_at: UnixTime,
    ) -> Result<bool, StoreError>;
    async fn delete_partner(&self, code: &str) -> Result<bool, StoreError>;
}

/// A key a client signs its requests with (a signature dialect verifies against it); written
/// and read through [`crate::client_key::ClientKeys`], which seals what must be sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey {
    pub client_id: String,
    /// The key's name among the client's keys.
    pub kid: String,
    /// What the key is ([`crate::client_key::KeyAlg`]): `RS256`, an RSA public key; `HMAC`, a
    /// shared secret for either hash.
    pub alg: String,
    /// `RS256`: the DER SubjectPublicKeyInfo, public, stored as is. `HMAC`: the secret sealed
    /// under the master key (`nonce || AES-256-GCM`), never in the clear. The column is still
    /// called `public_key` (migration 0009): one column holds either.
    pub material: Vec<u8>,
    pub created_at: UnixTime,
}

/// Never the material: a sealed secret is no business of a log line either.
impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("client_id", &self.client_id)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Clients' verification keys, and the signatures already used (each is accepted once).
#[async_trait]
pub trait ClientKeyStore: Send + Sync {
    /// `Conflict("client_key")` when the client already has a key of that `kid`.
    async fn add_client_key(&self, key: &ClientKey) -> Result<(), StoreError>;
    /// The client's keys, newest first.
    async fn client_keys(&self, client_id: &str) -> Result<Vec<ClientKey>, StoreError>;
    async fn delete_client_key(&self, client_id: &str, kid: &str) -> Result<bool, StoreError>;
    /// Records a signature (by its digest) until `expires_at`, forgetting those expired by
    /// `now`; `false` when it was already recorded: a replay. Atomic across nodes.
    async fn use_signature(
        &self,
        digest: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError>;
}

/// When repeated failed sign-ins lock an account: after `threshold` failures in a row the
/// account is locked for `base_secs`, and every further failure doubles the lock, up to
/// `max_secs`. A failure more than `max_secs` after the previous one starts the count anew,
/// so old typos are forgotten. `threshold == 0` turns lockout off. Attempts refused during a
/// lock are not checked and do not count: only the expiry lets the next guess in.
///
/// The stores compute the lock in their own SQL (one atomic statement); [`Self::lock_secs`] is
/// the definition they must agree with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub threshold: u32,
    pub base_secs: i64,
    pub max_secs: i64,
}

impl LockoutPolicy {
    /// Doublings beyond this overflow nothing and have long reached any sane `max_secs`.
    pub const MAX_DOUBLINGS: u32 = 30;

    pub fn enabled(&self) -> bool {
        self.threshold > 0
    }

    /// Seconds the account is locked after its `failures`-th failure in a row; `None` below
    /// the threshold.
    pub fn lock_secs(&self, failures: u32) -> Option<i64> {
        if !self.enabled() || failures < self.threshold {
            return None;
        }
        let doublings = (failures - self.threshold).min(Self::MAX_DOUBLINGS);
        Some(
            self.base_secs
                .saturating_mul(1i64 << doublings)
                .min(self.max_secs),
        )
    }
}

/// The failed sign-ins of one username (known or not: tracking unknown names too means an
/// attacker learns nothing from how a name is treated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginFailures {
    pub username: String,
    /// Failures in a row (a success or an unlock clears them).
    pub failures: u32,
    pub last_failure_at: UnixTime,
    /// Sign-ins are refused until this instant.
    pub locked_until: Option<UnixTime>,
}

impl LoginFailures {
    /// Whether the account is locked at `now`.
    pub fn locked_at(&self, now: UnixTime) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }
}

/// What [`LoginFailureStore::reserve_login_attempt`] decided about one sign-in attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginAttempt {
    /// The password may be checked. The attempt already counts as a failure in this state
    /// (and may have set the lock that refuses the attempts after it); a success clears it.
    Reserved(LoginFailures),
    /// The name is locked: refused without checking the password, and not counted.
    Locked(LoginFailures),
}

/// Failed sign-ins per username, kept in the database so that every node sees the same count.
///
/// An attempt is counted *before* its password is checked ([`Self::reserve_login_attempt`]),
/// not after: counted after, guesses sent together were all checked before the first failure
/// was recorded, and a burst got `max_concurrent + max_queue` guesses per node where
/// `threshold` were allowed (issue 13 §4; NIST SP 800-63B §5.2.2 limits the guesses checked).
/// A wrong password then needs no second write: its reservation is its failure. An attempt
/// whose outcome is never known (the node crashed during the check, the store failed after
/// the reservation) stays one failure, which a success clears and which is forgotten with the
/// others `max_secs` after the last one: it never locks anybody out for longer than a
/// failure would.
#[async_trait]
pub trait LoginFailureStore: Send + Sync {
    /// Atomically, across any number of processes: when `username` is locked at `now`,
    /// changes nothing and returns [`LoginAttempt::Locked`]; otherwise counts one more failure
    /// of `username` at `now` (starting at 1 when the previous failure is older than
    /// `policy.max_secs`), sets `locked_until` to `now + policy.lock_secs(failures)` (or clears
    /// it below the threshold) and returns [`LoginAttempt::Reserved`] with the new state. Of N
    /// concurrent calls on a name without failures, exactly `threshold` are reserved and the
    /// lock they leave lasts `base_secs`.
    async fn reserve_login_attempt(
        &self,
        username: &str,
        now: UnixTime,
        policy: &LockoutPolicy,
    ) -> Result<LoginAttempt, StoreError>;
    async fn find_login_failures(
        &self,
        username: &str,
    ) -> Result<Option<LoginFailures>, StoreError>;
    /// Forgets the failures of `username` (a successful sign-in, or the operator's unlock);
    /// returns whether there were any.
    async fn clear_login_failures(&self, username: &str) -> Result<bool, StoreError>;
    /// Deletes up to `batch` rows whose last failure is before `before` and that are not locked
    /// at `now`; returns how many went. Keeps the table bounded although unknown usernames are
    /// tracked too.
    async fn purge_login_failures(
        &self,
        before: UnixTime,
        now: UnixTime,
        batch: u32,
    ) -> Result<u64, StoreError>;
}

#[async_trait]
pub trait Readiness: Send + Sync {
    /// A cheap round trip to the database.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The connection pool's size and idle connections, for metrics; `None` without a pool.
    fn pool_connections(&self) -> Option<PoolConnections> {
        None
    }
    /// Group commit so far, for metrics; `None` where every write is its own transaction.
    fn write_batches(&self) -> Option<WriteBatches> {
        None
    }
}

/// How many transactions a group-committing store committed, and how many writes they carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteBatches {
    pub commits: u64,
    pub jobs: u64,
}

/// A snapshot of a connection pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConnections {
    /// Open connections, idle or in use.
    pub open: u32,
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

/// The stores of one backend, chosen once at start-up from the database URL.
#[derive(Clone)]
pub struct Stores {
    pub client_keys: Arc<dyn ClientKeyStore>,
    pub users: Arc<dyn UserStore>,
    pub clients: Arc<dyn ClientStore>,
    pub tokens: Arc<dyn TokenStore>,
    pub keys: Arc<dyn KeyStore>,
    pub partners: Arc<dyn PartnerStore>,
    pub codes: Arc<dyn AuthCodeStore>,
    pub login_failures: Arc<dyn LoginFailureStore>,
    pub audit: Arc<dyn AuditStore>,
    pub readiness: Arc<dyn Readiness>,
}

/// What an audit event records. Stored as [`AuditKind::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// A user's password was accepted (password grant of any dialect, the login form).
    LoginSuccess,
    /// A wrong password, an unknown or disabled user.
    LoginFailure,
    /// A token response: grant, client, subject, which tokens and a hash prefix, never a token.
    TokenIssued,
    /// A redeemed refresh token (or authorization code) was presented again outside the retry
    /// window (RFC 9700 §4.14.2).
    RefreshReuse,
    /// A token family was revoked because of such a reuse.
    FamilyRevoked,
    /// RFC 7009 revocation by a client.
    Revocation,
    /// An account or client was locked out after repeated failures.
    Lockout,
    /// A signing key was scheduled.
    KeyRotation,
    /// An admin CLI action; `detail.action` names it (e.g. `client.add`).
    Admin,
}

impl AuditKind {
    pub const ALL: [AuditKind; 9] = [
        AuditKind::LoginSuccess,
        AuditKind::LoginFailure,
        AuditKind::TokenIssued,
        AuditKind::RefreshReuse,
        AuditKind::FamilyRevoked,
        AuditKind::Revocation,
        AuditKind::Lockout,
        AuditKind::KeyRotation,
        AuditKind::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::LoginSuccess => "login_success",
            AuditKind::LoginFailure => "login_failure",
            AuditKind::TokenIssued => "token_issued",
            AuditKind::RefreshReuse => "refresh_reuse",
            AuditKind::FamilyRevoked => "family_revoked",
            AuditKind::Revocation => "revocation",
            AuditKind::Lockout => "lockout",
            AuditKind::KeyRotation => "key_rotation",
            AuditKind::Admin => "admin",
        }
    }
}

impl std::str::FromStr for AuditKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AuditKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown audit kind `{s}` (one of: {})", names.join(", "))
            })
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit event. `detail` is a JSON object as text; it never holds a secret (callers put
/// hash prefixes, `jti`s, ids and names there, nothing a bearer could use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Assigned by the store; 0 on an event not stored yet.
    pub id: i64,
    pub at: UnixTime,
    pub kind: AuditKind,
    /// The user id (or, for a failed login, the username tried; for client-only grants the
    /// client id), when there is one.
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub detail: String,
    /// The node that recorded it, when known.
    pub node: Option<String>,
}

impl AuditEvent {
    /// `detail` is anything that serialises to a JSON object: a `json!` value, or a typed
    /// struct on hot paths (no intermediate map to build and drop).
    pub fn new(at: UnixTime, kind: AuditKind, detail: impl serde::Serialize) -> AuditEvent {
        AuditEvent {
            id: 0,
            at,
            kind,
            subject: None,
            client_id: None,
            // Only a map with non-string keys fails to serialise; none is ever passed.
            detail: serde_json::to_string(&detail).unwrap_or_else(|_| "{}".to_owned()),
            node: None,
        }
    }

    pub fn subject(mut self, subject: impl Into<String>) -> AuditEvent {
        self.subject = Some(subject.into());
        self
    }

    pub fn client(mut self, client_id: impl Into<String>) -> AuditEvent {
        self.client_id = Some(client_id.into());
        self
    }
}

/// Which audit events to list: every given field must match; `since`/`until` are inclusive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub kind: Option<AuditKind>,
    pub since: Option<UnixTime>,
    pub until: Option<UnixTime>,
    /// At most this many (newest first).
    pub limit: u32,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Queues `event` for storage. Unlike every other write of the contract this one may
    /// return before the event is durable: the token hot path must not wait for an extra
    /// commit. A crash can lose the events of the last moments (those queued but not
    /// committed); [`AuditStore::flush`] waits until everything queued before it is durable.
    /// Waits only when the queue is full (back-pressure, never an unbounded queue).
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError>;
    /// Returns once every event recorded before the call is committed.
    async fn flush(&self) -> Result<(), StoreError>;
    /// Newest first (by `at`, then by insertion), at most `filter.limit`.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError>;
    /// Deletes up to `batch` events older than `before`; returns how many went.
    async fn purge_audit(&self, before: UnixTime, batch: u32) -> Result<u64, StoreError>;
}
