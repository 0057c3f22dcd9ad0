//! An in-memory [`Stores`] for the engine's tests, the benches and the fuzz targets (compiled
//! with the `testing` feature, or in this crate's own tests). Not a backend: it is not durable
//! and holds everything behind one mutex, which is its transaction. It keeps the backends'
//! contract all the same: `khoa-store`'s conformance suite runs every case over `&Stores` on it
//! (`tests/conformance/memory.rs`), so what the engine's tests rely on is what SQLite and
//! PostgreSQL do — the same orderings, conflict names, batch limits and cascades.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::model::{Client, UnixTime, User};
use crate::store::*;

/// A stored refresh token: the record, and what its redemption set (`used_at`, the successor's
/// hash and the sealed successor).
type RefreshRow = (
    RefreshRecord,
    Option<UnixTime>,
    Option<String>,
    Option<Vec<u8>>,
);

/// A partner key and the partner it belongs to; `seq` breaks ties of `created_at` as the
/// backends' rowid (or `seq` column) does.
struct PartnerKeyRow {
    seq: u64,
    partner_code: String,
    key: PartnerKey,
}

#[derive(Default)]
struct Inner {
    users: HashMap<String, User>,
    clients: HashMap<String, Client>,
    families: HashMap<String, Family>,
    refresh: HashMap<String, RefreshRow>,
    access: HashMap<String, AccessRecord>,
    revoked_jwts: HashMap<String, RevokedJwt>,
    /// In activation order, insertion order among ties (as `ORDER BY activates_at, rowid`).
    keys: Vec<SigningKeyRecord>,
    /// The partners without their keys (`keys` is empty here): those are in `partner_keys`.
    partners: HashMap<String, Partner>,
    partner_keys: Vec<PartnerKeyRow>,
    codes: HashMap<String, AuthCodeState>,
    login_failures: HashMap<String, LoginFailures>,
    audit: Vec<AuditEvent>,
    client_keys: Vec<(u64, ClientKey)>,
    used_signatures: HashMap<String, UnixTime>,
    /// The last row number handed out: audit ids and the insertion order of keys, never reused.
    seq: u64,
}

#[derive(Clone, Default)]
pub struct MemoryStore(Arc<Mutex<Inner>>);

impl MemoryStore {
    pub fn stores() -> Stores {
        let m = MemoryStore::default();
        Stores {
            client_keys: Arc::new(m.clone()),
            users: Arc::new(m.clone()),
            clients: Arc::new(m.clone()),
            tokens: Arc::new(m.clone()),
            keys: Arc::new(m.clone()),
            partners: Arc::new(m.clone()),
            codes: Arc::new(m.clone()),
            login_failures: Arc::new(m.clone()),
            audit: Arc::new(m.clone()),
            readiness: Arc::new(m),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().expect("memory store poisoned")
    }
}

/// What a backend reports for a row its schema refuses (a taken primary key, a missing parent
/// row) where no caller expects it: not a named conflict.
fn refused(why: &str) -> StoreError {
    StoreError::other(format!("the memory store refused a row: {why}"))
}

impl Inner {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// What the backends' schema would refuse in `i`, checked before anything is written: a
    /// failed write stores nothing, as a rolled-back transaction.
    fn check_issuance(&self, i: &Issuance) -> Result<(), StoreError> {
        if let Some(f) = &i.family
            && self.families.contains_key(&f.id)
        {
            return Err(refused("token_families.id taken"));
        }
        let family_exists = |id: &str| {
            self.families.contains_key(id) || i.family.as_ref().is_some_and(|f| f.id == id)
        };
        if let Some(r) = &i.refresh {
            self.check_refresh(r, family_exists(&r.family_id))?;
        }
        if let Some(a) = &i.access {
            self.check_access(a, a.family_id.as_deref().is_none_or(family_exists))?;
        }
        Ok(())
    }

    fn check_refresh(&self, r: &RefreshRecord, family_exists: bool) -> Result<(), StoreError> {
        if self.refresh.contains_key(&r.hash) {
            return Err(refused("refresh_tokens.hash taken"));
        }
        if !family_exists {
            return Err(refused("refresh_tokens.family_id names no family"));
        }
        Ok(())
    }

    fn check_access(&self, a: &AccessRecord, family_exists: bool) -> Result<(), StoreError> {
        if self.access.contains_key(&a.hash) {
            return Err(refused("access_tokens.hash taken"));
        }
        if !family_exists {
            return Err(refused("access_tokens.family_id names no family"));
        }
        Ok(())
    }

    /// Writes `i`, which [`Inner::check_issuance`] has let through.
    fn issue(&mut self, i: &Issuance) {
        if let Some(f) = &i.family {
            self.families.insert(f.id.clone(), f.clone());
        }
        if let Some(r) = &i.refresh {
            self.refresh
                .insert(r.hash.clone(), (r.clone(), None, None, None));
        }
        if let Some(a) = &i.access {
            self.access.insert(a.hash.clone(), a.clone());
        }
    }

    fn refresh_state(&self, hash: &str) -> Option<RefreshState> {
        let (r, used_at, succ, sealed) = self.refresh.get(hash)?;
        Some(RefreshState {
            hash: r.hash.clone(),
            family: self.families.get(&r.family_id)?.clone(),
            issued_at: r.issued_at,
            expires_at: r.expires_at,
            used_at: *used_at,
            successor_hash: succ.clone(),
            successor_sealed: sealed.clone(),
        })
    }

    /// Deletes a family and, as the backends' `ON DELETE CASCADE` does, its tokens.
    fn delete_family(&mut self, id: &str) {
        self.families.remove(id);
        self.refresh.retain(|_, r| r.0.family_id != id);
        self.access
            .retain(|_, a| a.family_id.as_deref() != Some(id));
    }

    /// The partner with its keys, newest first (by creation, the later-inserted among ties).
    fn partner(&self, code: &str) -> Option<Partner> {
        let mut partner = self.partners.get(code)?.clone();
        let mut keys: Vec<&PartnerKeyRow> = self
            .partner_keys
            .iter()
            .filter(|k| k.partner_code == code)
            .collect();
        keys.sort_by_key(|k| std::cmp::Reverse((k.key.created_at, k.seq)));
        partner.keys = keys.into_iter().map(|k| k.key.clone()).collect();
        Some(partner)
    }

    /// `Conflict("key_id")` when a partner key of that id exists, whichever partner holds it.
    fn check_partner_key(&self, key: &PartnerKey) -> Result<(), StoreError> {
        if self.partner_keys.iter().any(|k| k.key.key_id == key.key_id) {
            return Err(StoreError::Conflict("key_id".into()));
        }
        Ok(())
    }

    fn insert_partner_key(&mut self, code: &str, key: &PartnerKey) {
        let seq = self.next_seq();
        self.partner_keys.push(PartnerKeyRow {
            seq,
            partner_code: code.to_owned(),
            key: key.clone(),
        });
    }
}

/// The keys of up to `left` entries of `map` that `expired` picks, taken off `left`. Which ones
/// is as unspecified as the rows a backend's `LIMIT` picks.
fn some_expired<V>(
    map: &HashMap<String, V>,
    left: &mut u64,
    expired: impl Fn(&V) -> bool,
) -> Vec<String> {
    let picked: Vec<String> = map
        .iter()
        .filter(|(_, v)| expired(v))
        .take(*left as usize)
        .map(|(k, _)| k.clone())
        .collect();
    *left -= picked.len() as u64;
    picked
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn create_user(&self, u: &NewUser) -> Result<User, StoreError> {
        let mut g = self.lock();
        if g.users.values().any(|x| x.username == u.username) {
            return Err(StoreError::Conflict("username".into()));
        }
        if g.users.contains_key(&u.id) {
            return Err(refused("users.id taken"));
        }
        let user = u.to_user();
        g.users.insert(u.id.clone(), user.clone());
        Ok(user)
    }
    async fn find_user_by_username(&self, name: &str) -> Result<Option<User>, StoreError> {
        Ok(self
            .lock()
            .users
            .values()
            .find(|u| u.username == name)
            .cloned())
    }
    async fn find_user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        Ok(self.lock().users.get(id).cloned())
    }
    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let mut v: Vec<User> = self.lock().users.values().cloned().collect();
        v.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(v)
    }
    async fn set_password_hash(&self, name: &str, hash: &str) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let u = g.users.values_mut().find(|u| u.username == name);
        Ok(u.map(|u| u.password_hash = hash.to_owned()).is_some())
    }
    async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let u = g.users.values_mut().find(|u| u.username == name);
        Ok(u.map(|u| u.disabled = disabled).is_some())
    }
    async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let before = g.users.len();
        g.users.retain(|_, u| u.username != name);
        Ok(g.users.len() != before)
    }
}

#[async_trait]
impl ClientStore for MemoryStore {
    async fn create_client(&self, c: &Client) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.clients.contains_key(&c.client_id) {
            return Err(StoreError::Conflict("client_id".into()));
        }
        g.clients.insert(c.client_id.clone(), c.clone());
        Ok(())
    }
    async fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        Ok(self.lock().clients.get(id).cloned())
    }
    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        let mut v: Vec<Client> = self.lock().clients.values().cloned().collect();
        v.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(v)
    }
    async fn set_client_secret_hash(&self, id: &str, hash: &str) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let c = g.clients.get_mut(id);
        Ok(c.map(|c| c.secret_hash = Some(hash.to_owned())).is_some())
    }
    async fn delete_client(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().clients.remove(id).is_some())
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn issue(&self, i: &Issuance) -> Result<(), StoreError> {
        let mut g = self.lock();
        g.check_issuance(i)?;
        g.issue(i);
        Ok(())
    }
    async fn find_refresh(&self, hash: &str) -> Result<Option<RefreshState>, StoreError> {
        Ok(self.lock().refresh_state(hash))
    }
    async fn rotate(&self, r: &Rotation) -> Result<RotateOutcome, StoreError> {
        let mut g = self.lock();
        let Some(state) = g.refresh_state(&r.old_hash) else {
            return Ok(RotateOutcome::NotFound);
        };
        if state.family.revoked_at.is_some() {
            return Ok(RotateOutcome::Revoked);
        }
        if state.used_at.is_some() {
            return Ok(RotateOutcome::AlreadyUsed(state));
        }
        // Won: what the backends then insert must go in, or the whole rotation is undone.
        let successor_family = g.families.contains_key(&r.successor.family_id);
        g.check_refresh(&r.successor, successor_family)?;
        if let Some(a) = &r.access {
            let access_family = a
                .family_id
                .as_ref()
                .is_none_or(|f| g.families.contains_key(f));
            g.check_access(a, access_family)?;
        }
        let row = g.refresh.get_mut(&r.old_hash).expect("present");
        row.1 = Some(r.used_at);
        row.2 = Some(r.successor.hash.clone());
        row.3 = Some(r.successor_sealed.clone());
        g.refresh.insert(
            r.successor.hash.clone(),
            (r.successor.clone(), None, None, None),
        );
        if let Some(a) = &r.access {
            g.access.insert(a.hash.clone(), a.clone());
        }
        Ok(RotateOutcome::Rotated)
    }
    async fn revoke_family(&self, id: &str, at: UnixTime) -> Result<bool, StoreError> {
        let mut g = self.lock();
        match g.families.get_mut(id) {
            Some(f) if f.revoked_at.is_none() => {
                f.revoked_at = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn find_family(&self, id: &str) -> Result<Option<Family>, StoreError> {
        Ok(self.lock().families.get(id).cloned())
    }
    async fn find_access(&self, hash: &str) -> Result<Option<AccessState>, StoreError> {
        let g = self.lock();
        Ok(g.access.get(hash).map(|a| AccessState {
            revoked: a
                .family_id
                .as_ref()
                .and_then(|f| g.families.get(f))
                .is_some_and(|f| f.revoked_at.is_some()),
            record: a.clone(),
        }))
    }
    async fn revoke_access(&self, hash: &str) -> Result<bool, StoreError> {
        Ok(self.lock().access.remove(hash).is_some())
    }
    async fn revoke_jwt(&self, revoked: &RevokedJwt) -> Result<(), StoreError> {
        self.lock()
            .revoked_jwts
            .entry(revoked.jti.clone())
            .or_insert_with(|| revoked.clone());
        Ok(())
    }
    async fn revoked_jwts_since(
        &self,
        since: UnixTime,
        now: UnixTime,
    ) -> Result<Vec<RevokedJwt>, StoreError> {
        Ok(self
            .lock()
            .revoked_jwts
            .values()
            .filter(|r| r.revoked_at >= since && r.expires_at > now)
            .cloned()
            .collect())
    }
    async fn purge_expired(&self, now: UnixTime, batch: u32) -> Result<u64, StoreError> {
        // The backends' statements in their order, each taking at most what the batch has left.
        let mut g = self.lock();
        let mut left = u64::from(batch);
        for hash in some_expired(&g.access, &mut left, |a| a.expires_at <= now) {
            g.access.remove(&hash);
        }
        for hash in some_expired(&g.refresh, &mut left, |r| r.0.expires_at <= now) {
            g.refresh.remove(&hash);
        }
        // The tokens a family takes with it are not counted: a cascade is not a deleted row
        // of the statement (SQLite's changes(), PostgreSQL's rows_affected).
        for id in some_expired(&g.families, &mut left, |f| f.session_expires_at <= now) {
            g.delete_family(&id);
        }
        for jti in some_expired(&g.revoked_jwts, &mut left, |r| r.expires_at <= now) {
            g.revoked_jwts.remove(&jti);
        }
        for hash in some_expired(&g.codes, &mut left, |c| c.code.expires_at <= now) {
            g.codes.remove(&hash);
        }
        Ok(u64::from(batch) - left)
    }
}

#[async_trait]
impl AuthCodeStore for MemoryStore {
    async fn create_code(&self, code: &AuthCode) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.codes.contains_key(&code.hash) {
            return Err(StoreError::Conflict("code".into()));
        }
        let state = AuthCodeState {
            code: code.clone(),
            used_at: None,
            family_id: None,
        };
        g.codes.insert(code.hash.clone(), state);
        Ok(())
    }
    async fn find_code(&self, hash: &str) -> Result<Option<AuthCodeState>, StoreError> {
        Ok(self.lock().codes.get(hash).cloned())
    }
    async fn redeem_code(
        &self,
        hash: &str,
        used_at: UnixTime,
        issuance: &Issuance,
    ) -> Result<RedeemOutcome, StoreError> {
        let family_id = issuance
            .family
            .as_ref()
            .map(|f| f.id.clone())
            .ok_or_else(|| StoreError::other("a code redemption needs a family"))?;
        // One lock around the mark and the insert: the transaction of this store.
        let mut g = self.lock();
        let Some(state) = g.codes.get_mut(hash) else {
            return Ok(RedeemOutcome::NotFound);
        };
        if state.used_at.is_some() {
            return Ok(RedeemOutcome::AlreadyUsed {
                family_id: state.family_id.clone(),
            });
        }
        // Won, unless the tokens cannot go in: then the code stays unused.
        g.check_issuance(issuance)?;
        let state = g.codes.get_mut(hash).expect("present");
        state.used_at = Some(used_at);
        state.family_id = Some(family_id);
        g.issue(issuance);
        Ok(RedeemOutcome::Redeemed)
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn insert_first_key(&self, key: &SigningKeyRecord) -> Result<bool, StoreError> {
        let mut g = self.lock();
        if g.keys.iter().any(|k| k.published_at(key.activates_at)) {
            return Ok(false);
        }
        if g.keys.iter().any(|k| k.kid == key.kid) {
            return Err(StoreError::Conflict("kid".into()));
        }
        g.keys.push(key.clone());
        Ok(true)
    }
    async fn schedule_key(
        &self,
        key: &SigningKeyRecord,
        retire_others_at: UnixTime,
        now: UnixTime,
        if_pending: IfKeyPending,
    ) -> Result<KeySchedule, StoreError> {
        let mut g = self.lock();
        // A pending key refuses before the kid is looked at, as in the backends.
        if if_pending == IfKeyPending::Refuse
            && let Some(k) = g
                .keys
                .iter()
                .find(|k| k.activates_at > now && k.published_at(now))
        {
            return Ok(KeySchedule::Pending {
                kid: k.kid.clone(),
                activates_at: k.activates_at,
            });
        }
        if g.keys.iter().any(|k| k.kid == key.kid) {
            return Err(StoreError::Conflict("kid".into()));
        }
        for k in g.keys.iter_mut() {
            k.retires_at = Some(
                k.retires_at
                    .map_or(retire_others_at, |r| r.min(retire_others_at)),
            );
        }
        g.keys.push(key.clone());
        // Activation order, insertion order among ties (a stable sort), like the backends.
        g.keys.sort_by_key(|k| k.activates_at);
        Ok(KeySchedule::Scheduled)
    }
    async fn delete_retired_keys(&self, before: UnixTime) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let n = g.keys.len();
        g.keys.retain(|k| k.retires_at.is_none_or(|r| r > before));
        Ok((n - g.keys.len()) as u64)
    }
    async fn list_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        Ok(self.lock().keys.clone())
    }
}

#[async_trait]
impl PartnerStore for MemoryStore {
    async fn create_partner(&self, p: &Partner) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.partners.contains_key(&p.code) {
            return Err(StoreError::Conflict("partner_code".into()));
        }
        for (i, key) in p.keys.iter().enumerate() {
            g.check_partner_key(key)?;
            if p.keys[..i].iter().any(|k| k.key_id == key.key_id) {
                return Err(StoreError::Conflict("key_id".into()));
            }
        }
        g.partners.insert(
            p.code.clone(),
            Partner {
                keys: Vec::new(),
                ..p.clone()
            },
        );
        for key in &p.keys {
            g.insert_partner_key(&p.code, key);
        }
        Ok(())
    }
    async fn find_partner(&self, code: &str) -> Result<Option<Partner>, StoreError> {
        Ok(self.lock().partner(code))
    }
    async fn list_partners(&self) -> Result<Vec<Partner>, StoreError> {
        let g = self.lock();
        let mut codes: Vec<&String> = g.partners.keys().collect();
        codes.sort();
        Ok(codes.into_iter().filter_map(|c| g.partner(c)).collect())
    }
    async fn add_partner_key(
        &self,
        code: &str,
        key: &PartnerKey,
        old_keys_expire_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        if !g.partners.contains_key(code) {
            return Ok(false);
        }
        g.check_partner_key(key)?;
        for k in g
            .partner_keys
            .iter_mut()
            .filter(|k| k.partner_code == code && k.key.expires_at.is_none())
        {
            k.key.expires_at = Some(old_keys_expire_at);
        }
        g.insert_partner_key(code, key);
        Ok(true)
    }
    async fn delete_partner(&self, code: &str) -> Result<bool, StoreError> {
        let mut g = self.lock();
        g.partner_keys.retain(|k| k.partner_code != code);
        Ok(g.partners.remove(code).is_some())
    }
}

#[async_trait]
impl ClientKeyStore for MemoryStore {
    async fn add_client_key(&self, key: &ClientKey) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.client_keys
            .iter()
            .any(|(_, k)| k.client_id == key.client_id && k.kid == key.kid)
        {
            return Err(StoreError::Conflict("client_key".into()));
        }
        let seq = g.next_seq();
        g.client_keys.push((seq, key.clone()));
        Ok(())
    }
    async fn client_keys(&self, client_id: &str) -> Result<Vec<ClientKey>, StoreError> {
        let g = self.lock();
        let mut keys: Vec<&(u64, ClientKey)> = g
            .client_keys
            .iter()
            .filter(|(_, k)| k.client_id == client_id)
            .collect();
        // Newest first: by creation, the later-inserted among ties.
        keys.sort_by_key(|(seq, k)| std::cmp::Reverse((k.created_at, *seq)));
        Ok(keys.into_iter().map(|(_, k)| k.clone()).collect())
    }
    async fn delete_client_key(&self, client_id: &str, kid: &str) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let before = g.client_keys.len();
        g.client_keys
            .retain(|(_, k)| !(k.client_id == client_id && k.kid == kid));
        Ok(g.client_keys.len() != before)
    }
    async fn use_signature(
        &self,
        digest: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        g.used_signatures.retain(|_, exp| *exp > now);
        if g.used_signatures.contains_key(digest) {
            return Ok(false);
        }
        g.used_signatures.insert(digest.to_owned(), expires_at);
        Ok(true)
    }
}

#[async_trait]
impl LoginFailureStore for MemoryStore {
    async fn reserve_login_attempt(
        &self,
        username: &str,
        now: UnixTime,
        policy: &LockoutPolicy,
    ) -> Result<LoginAttempt, StoreError> {
        // One lock held from the look to the count: what the stores do in one statement.
        let mut g = self.lock();
        if let Some(locked) = g.login_failures.get(username).filter(|r| r.locked_at(now)) {
            return Ok(LoginAttempt::Locked(locked.clone()));
        }
        let row = g
            .login_failures
            .entry(username.to_owned())
            .or_insert_with(|| LoginFailures {
                username: username.to_owned(),
                failures: 0,
                last_failure_at: now,
                locked_until: None,
            });
        if row.last_failure_at < now - policy.max_secs {
            row.failures = 0;
        }
        row.failures += 1;
        row.last_failure_at = now;
        row.locked_until = policy.lock_secs(row.failures).map(|s| now + s);
        Ok(LoginAttempt::Reserved(row.clone()))
    }

    async fn find_login_failures(
        &self,
        username: &str,
    ) -> Result<Option<LoginFailures>, StoreError> {
        Ok(self.lock().login_failures.get(username).cloned())
    }

    async fn clear_login_failures(&self, username: &str) -> Result<bool, StoreError> {
        Ok(self.lock().login_failures.remove(username).is_some())
    }

    async fn purge_login_failures(
        &self,
        before: UnixTime,
        now: UnixTime,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let gone: Vec<String> = g
            .login_failures
            .values()
            .filter(|r| r.last_failure_at < before && !r.locked_at(now))
            .take(batch as usize)
            .map(|r| r.username.clone())
            .collect();
        for name in &gone {
            g.login_failures.remove(name);
        }
        Ok(gone.len() as u64)
    }
}

#[async_trait]
impl Readiness for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn record(&self, mut event: AuditEvent) -> Result<(), StoreError> {
        let mut g = self.lock();
        // A row number, never reused: the length would hand a purged event's id out again.
        event.id = g.next_seq() as i64;
        g.audit.push(event);
        Ok(())
    }
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        let g = self.lock();
        let mut v: Vec<AuditEvent> = g
            .audit
            .iter()
            .filter(|e| f.subject.is_none() || e.subject == f.subject)
            .filter(|e| f.client_id.is_none() || e.client_id == f.client_id)
            .filter(|e| f.kind.is_none_or(|k| e.kind == k))
            .filter(|e| f.since.is_none_or(|t| e.at >= t))
            .filter(|e| f.until.is_none_or(|t| e.at <= t))
            .cloned()
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse((e.at, e.id)));
        v.truncate(f.limit as usize);
        Ok(v)
    }
    async fn purge_audit(&self, before: UnixTime, batch: u32) -> Result<u64, StoreError> {
        // The oldest first, as the backends' `ORDER BY at LIMIT batch`.
        let mut g = self.lock();
        let mut old: Vec<(UnixTime, i64)> = g
            .audit
            .iter()
            .filter(|e| e.at < before)
            .map(|e| (e.at, e.id))
            .collect();
        old.sort_unstable();
        old.truncate(batch as usize);
        let gone: std::collections::HashSet<i64> = old.into_iter().map(|(_, id)| id).collect();
        g.audit.retain(|e| !gone.contains(&e.id));
        Ok(gone.len() as u64)
    }
}
