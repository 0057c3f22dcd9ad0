//! The cases, each an `async fn` over a backend's `Stores` (or, for the cases about the
//! database's life cycle, over a whole [`TestDb`]). They know nothing of any backend, the
//! in-memory one included.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use khoa_core::model::{
    AccessTokenFormat, Client, GrantType, RefreshIssuance, RefreshTokenFormat, TokenPolicy,
    UnixTime,
};
use khoa_core::scope::ScopeSet;
use khoa_core::store::{
    AccessRecord, AuditEvent, AuditFilter, AuditKind, AuthCode, ClientKey, Family, IfKeyPending,
    Issuance, KeySchedule, LockoutPolicy, LoginAttempt, LoginFailures, NewUser, Partner,
    PartnerKey, RedeemOutcome, RefreshRecord, RevokedJwt, RotateOutcome, Rotation,
    SigningKeyRecord, StoreError, Stores,
};
use khoa_store::StoreOptions;
use tokio::sync::Barrier;

/// What a case over `&Stores` runs on: a backend's [`TestDb`], or the bare [`Stores`] of a
/// store with no database behind it.
pub trait AsStores {
    fn as_stores(&self) -> &Stores;
}

impl AsStores for TestDb {
    fn as_stores(&self) -> &Stores {
        &self.stores
    }
}

impl AsStores for Stores {
    fn as_stores(&self) -> &Stores {
        self
    }
}

/// A fresh, migrated database and its stores.
pub struct TestDb {
    pub url: String,
    pub stores: Stores,
    /// Whatever keeps the database alive: a temporary directory, a database to drop…
    pub guard: Box<dyn Any + Send>,
}

/// Expands to one `#[tokio::test]` per case. `conformance_tests!(fresh)` is the whole suite,
/// each case on the fresh database `fresh().await` makes (a [`TestDb`]);
/// `conformance_tests!(stores: fresh)` only the cases over `&Stores`, for a store with no
/// database behind it (the in-memory one: nothing to reconnect to or migrate, no second node,
/// no connection pool), whose `fresh().await` may be bare [`Stores`]. A backend module calls it
/// once; a case added here runs on every backend.
macro_rules! conformance_tests {
    (stores: $fresh:path) => {
        $crate::suite::conformance_tests!(@stores $fresh;
            users_round_trip_and_change,
            a_taken_username_is_a_conflict,
            clients_round_trip_every_policy_field,
            a_taken_client_id_is_a_conflict,
            issued_tokens_can_be_found,
            rotation_stores_the_successor_and_refuses_a_second_redemption,
            of_concurrent_rotations_exactly_one_wins,
            rotating_an_unknown_token_is_not_found,
            a_revoked_family_refuses_rotation_and_revokes_its_access_tokens,
            purge_removes_expired_rows_only_in_batches,
            an_issuance_that_fails_stores_nothing,
            a_rotation_whose_successor_cannot_be_stored_changes_nothing,
            revoking_an_access_token_deletes_only_it,
            revoked_jwts_are_listed_from_a_time_until_they_expire,
            purge_removes_expired_revocation_entries,
            of_concurrent_first_keys_exactly_one_is_inserted,
            scheduling_a_key_sets_the_retirement_of_the_published_ones,
            a_pending_key_refuses_another_schedule_unless_told_to_retire_it,
            a_taken_kid_schedules_nothing,
            a_first_key_goes_in_only_when_no_key_is_published,
            keys_are_listed_in_activation_order_then_insertion_order,
            retired_keys_are_deleted_once_retired_long_enough,
            partners_round_trip_with_their_first_key,
            partners_are_listed_by_code,
            a_taken_partner_code_is_a_conflict,
            a_new_partner_key_ends_the_current_one_and_is_listed_first,
            deleting_a_partner_deletes_its_keys,
            a_taken_partner_key_id_is_a_conflict_whichever_partner_holds_it,
            readiness_pings_the_database,
            codes_round_trip_by_hash,
            redeeming_a_code_stores_its_tokens_and_a_second_redemption_names_the_family,
            of_concurrent_code_redemptions_exactly_one_wins,
            redeeming_an_unknown_code_is_not_found,
            a_redemption_whose_tokens_cannot_be_stored_leaves_the_code_unused,
            purge_removes_expired_codes,
            login_failures_count_lock_per_policy_and_clear,
            old_login_failures_restart_the_count,
            of_concurrent_reservations_exactly_threshold_are_let_through,
            purge_removes_old_unlocked_login_failures_only,
            audit_events_round_trip_newest_first,
            audit_events_filter_by_subject_client_kind_and_time,
            audit_purge_removes_old_events_in_batches,
            audit_purge_takes_the_oldest_events_first,
            an_event_recorded_after_a_purge_is_the_newest,
            client_keys_round_trip_newest_first_and_a_taken_kid_is_a_conflict,
            keys_are_listed_newest_first_by_creation_not_by_insertion,
            a_signature_is_used_once_until_it_expires,
            of_concurrent_uses_of_one_signature_exactly_one_wins,
        );
    };
    ($fresh:path) => {
        $crate::suite::conformance_tests!(stores: $fresh);
        // About the database itself: its pool, its life cycle, other nodes on it.
        $crate::suite::conformance_tests!(@stores $fresh; readiness_reports_the_pool);
        $crate::suite::conformance_tests!(@db $fresh;
            writes_survive_a_reconnect,
            migrations_run_twice_are_a_no_op,
            of_rotations_racing_on_two_nodes_exactly_one_wins,
            of_first_keys_racing_on_two_nodes_exactly_one_is_inserted,
            of_schedules_racing_on_two_nodes_exactly_one_is_scheduled,
            reservations_racing_on_two_nodes_let_exactly_threshold_through,
        );
    };
    (@stores $fresh:path; $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let db = $fresh().await;
            $crate::suite::$case($crate::suite::AsStores::as_stores(&db)).await;
        }
    )*};
    (@db $fresh:path; $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            $crate::suite::$case($fresh().await).await;
        }
    )*};
}
pub(crate) use conformance_tests;

const NOW: UnixTime = 1_750_000_000;

fn scopes(s: &str) -> ScopeSet {
    ScopeSet::parse(s).unwrap()
}

fn new_user(id: &str, username: &str) -> NewUser {
    NewUser {
        id: id.into(),
        username: username.into(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${username}"),
        allowed_scopes: None,
        created_at: NOW,
    }
}

fn family(id: &str) -> Family {
    Family {
        id: id.into(),
        client_id: "app".into(),
        subject: "user-1".into(),
        scope: scopes("offline_access user-data"),
        created_at: NOW,
        session_expires_at: NOW + 90 * 86_400,
        revoked_at: None,
    }
}

fn refresh(hash: &str, family_id: &str) -> RefreshRecord {
    RefreshRecord {
        hash: hash.into(),
        family_id: family_id.into(),
        issued_at: NOW,
        expires_at: NOW + 14 * 86_400,
    }
}

fn access(hash: &str, family_id: Option<&str>) -> AccessRecord {
    AccessRecord {
        hash: hash.into(),
        client_id: "app".into(),
        subject: "user-1".into(),
        scope: scopes("user-data"),
        family_id: family_id.map(Into::into),
        issued_at: NOW,
        expires_at: NOW + 3600,
        otp_hash: Some(format!("otp-of-{hash}")),
    }
}

pub fn rotation(old: &str, successor: &str, family_id: &str) -> Rotation {
    Rotation {
        old_hash: old.into(),
        used_at: NOW + 60,
        successor: RefreshRecord {
            issued_at: NOW + 60,
            ..refresh(successor, family_id)
        },
        successor_sealed: format!("sealed:{successor}").into_bytes(),
        access: None,
    }
}

/// A family with one live refresh token `hash`.
pub async fn issue_family(stores: &Stores, family_id: &str, hash: &str) {
    stores
        .tokens
        .issue(&Issuance {
            family: Some(family(family_id)),
            refresh: Some(refresh(hash, family_id)),
            access: None,
        })
        .await
        .unwrap();
}

pub fn key(kid: &str, created_at: UnixTime) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        alg: "EdDSA".into(),
        private_sealed: format!("sealed private key {kid}").into_bytes(),
        public_jwk: format!(r#"{{"kty":"OKP","crv":"Ed25519","kid":"{kid}","x":"AAAA"}}"#),
        created_at,
        activates_at: created_at,
        retires_at: None,
    }
}

/// A key created at `created_at` that activates at `activates_at`.
pub fn scheduled_key(kid: &str, created_at: UnixTime, activates_at: UnixTime) -> SigningKeyRecord {
    SigningKeyRecord {
        activates_at,
        ..key(kid, created_at)
    }
}

/// `(kid, activates_at, retires_at)` of every key, as listed.
async fn schedule_of(stores: &Stores) -> Vec<(String, UnixTime, Option<UnixTime>)> {
    stores
        .keys
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.kid, k.activates_at, k.retires_at))
        .collect()
}

fn row(
    kid: &str,
    activates_at: UnixTime,
    retires_at: Option<UnixTime>,
) -> (String, UnixTime, Option<UnixTime>) {
    (kid.to_owned(), activates_at, retires_at)
}

pub async fn users_round_trip_and_change(stores: &Stores) {
    let users = &stores.users;
    let bob = users.create_user(&new_user("u-2", "bob")).await.unwrap();
    let alice = users
        .create_user(&NewUser {
            allowed_scopes: Some(scopes("user-data offline_access")),
            ..new_user("u-1", "alice")
        })
        .await
        .unwrap();
    assert_eq!(
        alice.allowed_scopes,
        Some(scopes("offline_access user-data"))
    );
    assert!(!alice.disabled);

    assert_eq!(
        users.find_user_by_username("alice").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        users.find_user_by_id("u-2").await.unwrap(),
        Some(bob.clone())
    );
    assert_eq!(users.find_user_by_username("carol").await.unwrap(), None);
    assert_eq!(users.list_users().await.unwrap(), [alice, bob]);

    assert!(
        users
            .set_password_hash("alice", "$argon2id$new")
            .await
            .unwrap()
    );
    assert!(
        !users
            .set_password_hash("carol", "$argon2id$new")
            .await
            .unwrap()
    );
    assert!(users.set_user_disabled("bob", true).await.unwrap());
    let alice = users.find_user_by_id("u-1").await.unwrap().unwrap();
    let bob = users.find_user_by_id("u-2").await.unwrap().unwrap();
    assert_eq!(alice.password_hash, "$argon2id$new");
    assert!(!alice.disabled);
    assert!(bob.disabled);

    assert!(users.delete_user("bob").await.unwrap());
    assert!(!users.delete_user("bob").await.unwrap());
    assert_eq!(users.find_user_by_username("bob").await.unwrap(), None);
    assert_eq!(users.list_users().await.unwrap(), [alice]);
}

pub async fn a_taken_username_is_a_conflict(stores: &Stores) {
    stores
        .users
        .create_user(&new_user("u-1", "alice"))
        .await
        .unwrap();
    let second = stores.users.create_user(&new_user("u-2", "alice")).await;
    assert_eq!(second.err(), Some(StoreError::Conflict("username".into())));
    assert_eq!(stores.users.find_user_by_id("u-2").await.unwrap(), None);
}

fn confidential_client() -> Client {
    Client {
        client_id: "backend".into(),
        name: "Back end".into(),
        secret_hash: Some(
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        ),
        allowed_scopes: scopes("client-data config-data"),
        default_scopes: scopes("client-data"),
        grant_types: vec![GrantType::ClientCredentials, GrantType::Password],
        redirect_uris: Vec::new(),
        policy: TokenPolicy {
            access_format: AccessTokenFormat::Opaque,
            access_ttl: 600,
            refresh: RefreshIssuance::Always,
            refresh_ttl: 7200,
            session_lifetime: 86_400,
            reuse_window: 0,
            refresh_format: RefreshTokenFormat::Account,
            otp: true,
        },
        disabled: true,
        created_at: NOW,
    }
}

fn public_client() -> Client {
    Client {
        client_id: "app".into(),
        name: "Mobile app".into(),
        secret_hash: None,
        allowed_scopes: scopes("offline_access user-data"),
        default_scopes: ScopeSet::new(),
        grant_types: vec![
            GrantType::AuthorizationCode,
            GrantType::Password,
            GrantType::RefreshToken,
        ],
        redirect_uris: vec![
            "https://app.example/callback".into(),
            "http://127.0.0.1:8000/cb?x=1".into(),
        ],
        policy: TokenPolicy {
            refresh: RefreshIssuance::Never,
            ..TokenPolicy::default()
        },
        disabled: false,
        created_at: NOW + 1,
    }
}

pub async fn clients_round_trip_every_policy_field(stores: &Stores) {
    let clients = &stores.clients;
    let (confidential, public) = (confidential_client(), public_client());
    clients.create_client(&confidential).await.unwrap();
    clients.create_client(&public).await.unwrap();

    assert_eq!(
        clients.find_client("backend").await.unwrap(),
        Some(confidential.clone())
    );
    assert_eq!(
        clients.find_client("app").await.unwrap(),
        Some(public.clone())
    );
    assert_eq!(clients.find_client("nobody").await.unwrap(), None);
    assert_eq!(
        clients.list_clients().await.unwrap(),
        [public.clone(), confidential]
    );

    assert!(clients.set_client_secret_hash("app", "00ff").await.unwrap());
    assert!(
        !clients
            .set_client_secret_hash("nobody", "00ff")
            .await
            .unwrap()
    );
    let app = clients.find_client("app").await.unwrap().unwrap();
    assert_eq!(app.secret_hash.as_deref(), Some("00ff"));

    assert!(clients.delete_client("backend").await.unwrap());
    assert!(!clients.delete_client("backend").await.unwrap());
    assert_eq!(clients.list_clients().await.unwrap(), [app]);
}

pub async fn a_taken_client_id_is_a_conflict(stores: &Stores) {
    stores
        .clients
        .create_client(&public_client())
        .await
        .unwrap();
    let second = Client {
        name: "Impostor".into(),
        ..public_client()
    };
    assert_eq!(
        stores.clients.create_client(&second).await.err(),
        Some(StoreError::Conflict("client_id".into()))
    );
    let stored = stores.clients.find_client("app").await.unwrap().unwrap();
    assert_eq!(stored.name, "Mobile app");
}

fn revoked_jwt(jti: &str, revoked_at: UnixTime, expires_at: UnixTime) -> RevokedJwt {
    RevokedJwt {
        jti: jti.into(),
        expires_at,
        revoked_at,
    }
}

pub async fn revoking_an_access_token_deletes_only_it(stores: &Stores) {
    let tokens = &stores.tokens;
    for hash in ["at-1", "at-2"] {
        tokens
            .issue(&Issuance {
                access: Some(access(hash, None)),
                ..Issuance::default()
            })
            .await
            .unwrap();
    }

    assert!(tokens.revoke_access("at-1").await.unwrap());
    assert!(!tokens.revoke_access("at-1").await.unwrap());
    assert!(!tokens.revoke_access("never-issued").await.unwrap());

    assert_eq!(tokens.find_access("at-1").await.unwrap(), None);
    assert!(tokens.find_access("at-2").await.unwrap().is_some());
}

pub async fn revoked_jwts_are_listed_from_a_time_until_they_expire(stores: &Stores) {
    let tokens = &stores.tokens;
    tokens
        .revoke_jwt(&revoked_jwt("old", NOW, NOW + 3600))
        .await
        .unwrap();
    tokens
        .revoke_jwt(&revoked_jwt("new", NOW + 10, NOW + 3600))
        .await
        .unwrap();
    tokens
        .revoke_jwt(&revoked_jwt("short", NOW + 10, NOW + 20))
        .await
        .unwrap();
    // Idempotent: revoking again neither fails nor moves the entry.
    tokens
        .revoke_jwt(&revoked_jwt("old", NOW + 50, NOW + 3600))
        .await
        .unwrap();

    let jtis = |list: Vec<RevokedJwt>| {
        let mut v: Vec<String> = list.into_iter().map(|r| r.jti).collect();
        v.sort();
        v
    };
    assert_eq!(
        jtis(tokens.revoked_jwts_since(NOW, NOW).await.unwrap()),
        ["new", "old", "short"]
    );
    assert_eq!(
        jtis(tokens.revoked_jwts_since(NOW + 1, NOW).await.unwrap()),
        ["new", "short"]
    );
    // `short` has expired by NOW + 20: a validator no longer needs it.
    assert_eq!(
        tokens.revoked_jwts_since(NOW + 1, NOW + 20).await.unwrap(),
        [revoked_jwt("new", NOW + 10, NOW + 3600)]
    );
}

pub async fn purge_removes_expired_revocation_entries(stores: &Stores) {
    let tokens = &stores.tokens;
    tokens
        .revoke_jwt(&revoked_jwt("gone", NOW, NOW + 10))
        .await
        .unwrap();
    tokens
        .revoke_jwt(&revoked_jwt("kept", NOW, NOW + 3600))
        .await
        .unwrap();

    let purged = tokens.purge_expired(NOW + 10, 100).await.unwrap();

    assert_eq!(purged, 1);
    assert_eq!(
        tokens.revoked_jwts_since(0, 0).await.unwrap(),
        [revoked_jwt("kept", NOW, NOW + 3600)]
    );
}

pub async fn issued_tokens_can_be_found(stores: &Stores) {
    let tokens = &stores.tokens;
    tokens
        .issue(&Issuance {
            family: Some(family("fam-1")),
            refresh: Some(refresh("rt-1", "fam-1")),
            access: Some(access("at-1", Some("fam-1"))),
        })
        .await
        .unwrap();
    // A client-credentials response: an access token outside any family.
    tokens
        .issue(&Issuance {
            access: Some(access("at-cc", None)),
            ..Issuance::default()
        })
        .await
        .unwrap();

    assert_eq!(
        tokens.find_family("fam-1").await.unwrap(),
        Some(family("fam-1"))
    );
    assert_eq!(tokens.find_family("fam-2").await.unwrap(), None);

    let state = tokens.find_refresh("rt-1").await.unwrap().unwrap();
    assert_eq!(state.hash, "rt-1");
    assert_eq!(state.family, family("fam-1"));
    assert_eq!(
        (state.issued_at, state.expires_at),
        (NOW, NOW + 14 * 86_400)
    );
    assert_eq!(state.used_at, None);
    assert_eq!(state.successor_hash, None);
    assert_eq!(state.successor_sealed, None);
    assert_eq!(tokens.find_refresh("rt-2").await.unwrap(), None);

    let at = tokens.find_access("at-1").await.unwrap().unwrap();
    assert_eq!(at.record, access("at-1", Some("fam-1")));
    assert!(!at.revoked);
    let cc = tokens.find_access("at-cc").await.unwrap().unwrap();
    assert_eq!(cc.record, access("at-cc", None));
    assert!(!cc.revoked);
    assert_eq!(tokens.find_access("at-2").await.unwrap(), None);
}

pub async fn rotation_stores_the_successor_and_refuses_a_second_redemption(stores: &Stores) {
    let tokens = &stores.tokens;
    issue_family(stores, "fam-1", "rt-1").await;
    let first = Rotation {
        access: Some(access("at-2", Some("fam-1"))),
        ..rotation("rt-1", "rt-2", "fam-1")
    };
    assert_eq!(tokens.rotate(&first).await.unwrap(), RotateOutcome::Rotated);

    let successor = tokens.find_refresh("rt-2").await.unwrap().unwrap();
    assert_eq!(successor.used_at, None);
    assert_eq!(successor.issued_at, NOW + 60);
    assert!(tokens.find_access("at-2").await.unwrap().is_some());

    // A retry (or a thief) redeeming rt-1 again learns who won, with the sealed successor.
    let RotateOutcome::AlreadyUsed(state) = tokens
        .rotate(&rotation("rt-1", "rt-3", "fam-1"))
        .await
        .unwrap()
    else {
        panic!("a redeemed token must not rotate twice");
    };
    assert_eq!(state.hash, "rt-1");
    assert_eq!(state.used_at, Some(NOW + 60));
    assert_eq!(state.successor_hash.as_deref(), Some("rt-2"));
    assert_eq!(state.successor_sealed.as_deref(), Some(&b"sealed:rt-2"[..]));
    assert_eq!(tokens.find_refresh("rt-3").await.unwrap(), None);
    assert_eq!(tokens.find_refresh("rt-1").await.unwrap(), Some(state));
}

pub async fn of_concurrent_rotations_exactly_one_wins(stores: &Stores) {
    issue_family(stores, "fam-1", "rt-0").await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let tokens = stores.tokens.clone();
            tokio::spawn(async move {
                let successor = format!("rt-{}", i + 1);
                let outcome = tokens.rotate(&rotation("rt-0", &successor, "fam-1")).await;
                (successor, outcome.unwrap())
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut seen_by_losers = HashSet::new();
    for task in tasks {
        match task.await.unwrap() {
            (successor, RotateOutcome::Rotated) => winners.push(successor),
            (_, RotateOutcome::AlreadyUsed(state)) => {
                seen_by_losers.insert(state.successor_hash.unwrap());
            }
            (_, other) => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one rotation wins");
    assert_eq!(seen_by_losers, HashSet::from([winners[0].clone()]));

    // The family did not fork: the original and the winner's successor, nothing else.
    let original = stores.tokens.find_refresh("rt-0").await.unwrap().unwrap();
    assert_eq!(original.successor_hash.as_ref(), Some(&winners[0]));
    let mut stored = Vec::new();
    for i in 1..=50 {
        let hash = format!("rt-{i}");
        if stores.tokens.find_refresh(&hash).await.unwrap().is_some() {
            stored.push(hash);
        }
    }
    assert_eq!(stored, winners);
}

pub async fn rotating_an_unknown_token_is_not_found(stores: &Stores) {
    issue_family(stores, "fam-1", "rt-1").await;
    let outcome = stores
        .tokens
        .rotate(&rotation("rt-x", "rt-2", "fam-1"))
        .await;
    assert_eq!(outcome.unwrap(), RotateOutcome::NotFound);
    assert_eq!(stores.tokens.find_refresh("rt-2").await.unwrap(), None);
}

pub async fn a_revoked_family_refuses_rotation_and_revokes_its_access_tokens(stores: &Stores) {
    let tokens = &stores.tokens;
    tokens
        .issue(&Issuance {
            family: Some(family("fam-1")),
            refresh: Some(refresh("rt-1", "fam-1")),
            access: Some(access("at-1", Some("fam-1"))),
        })
        .await
        .unwrap();
    issue_family(stores, "fam-2", "rt-other").await;

    assert!(tokens.revoke_family("fam-1", NOW + 5).await.unwrap());
    assert!(
        !tokens.revoke_family("fam-1", NOW + 9).await.unwrap(),
        "already revoked"
    );
    assert!(
        !tokens.revoke_family("fam-x", NOW + 9).await.unwrap(),
        "no such family"
    );

    let fam = tokens.find_family("fam-1").await.unwrap().unwrap();
    assert_eq!(fam.revoked_at, Some(NOW + 5));
    assert_eq!(
        tokens
            .rotate(&rotation("rt-1", "rt-2", "fam-1"))
            .await
            .unwrap(),
        RotateOutcome::Revoked
    );
    assert_eq!(tokens.find_refresh("rt-2").await.unwrap(), None);
    assert!(tokens.find_access("at-1").await.unwrap().unwrap().revoked);
    // Other families are untouched.
    assert_eq!(
        tokens
            .find_family("fam-2")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
}

pub async fn purge_removes_expired_rows_only_in_batches(stores: &Stores) {
    let tokens = &stores.tokens;
    // A live family holding one expired and one live token of each kind…
    tokens
        .issue(&Issuance {
            family: Some(family("live")),
            refresh: Some(RefreshRecord {
                expires_at: NOW,
                ..refresh("rt-expired", "live")
            }),
            access: Some(AccessRecord {
                expires_at: NOW,
                ..access("at-expired", Some("live"))
            }),
        })
        .await
        .unwrap();
    tokens
        .issue(&Issuance {
            family: None,
            refresh: Some(refresh("rt-live", "live")),
            access: Some(access("at-live", Some("live"))),
        })
        .await
        .unwrap();
    // …and a family past its session end, whose still-unexpired tokens go with it.
    tokens
        .issue(&Issuance {
            family: Some(Family {
                session_expires_at: NOW - 1,
                ..family("ended")
            }),
            refresh: Some(refresh("rt-ended", "ended")),
            access: Some(access("at-ended", Some("ended"))),
        })
        .await
        .unwrap();

    for call in 1..=3 {
        assert_eq!(
            tokens.purge_expired(NOW, 1).await.unwrap(),
            1,
            "call {call}"
        );
    }
    assert_eq!(
        tokens.purge_expired(NOW, 1).await.unwrap(),
        0,
        "nothing left to purge"
    );
    assert_eq!(tokens.purge_expired(NOW, 100).await.unwrap(), 0);

    assert_eq!(tokens.find_refresh("rt-expired").await.unwrap(), None);
    assert_eq!(tokens.find_access("at-expired").await.unwrap(), None);
    assert_eq!(tokens.find_family("ended").await.unwrap(), None);
    assert_eq!(tokens.find_refresh("rt-ended").await.unwrap(), None);
    assert_eq!(tokens.find_access("at-ended").await.unwrap(), None);
    assert!(tokens.find_family("live").await.unwrap().is_some());
    assert!(tokens.find_refresh("rt-live").await.unwrap().is_some());
    assert!(tokens.find_access("at-live").await.unwrap().is_some());
}

/// Every write is atomic (store.rs): one whose rows the schema refuses stores none of them.
pub async fn an_issuance_that_fails_stores_nothing(stores: &Stores) {
    let tokens = &stores.tokens;
    issue_family(stores, "fam-1", "rt-1").await;

    // A taken refresh hash: the new family and access token go back with it.
    let taken = tokens
        .issue(&Issuance {
            family: Some(family("fam-2")),
            refresh: Some(refresh("rt-1", "fam-2")),
            access: Some(access("at-2", Some("fam-2"))),
        })
        .await;
    assert!(taken.is_err(), "{taken:?}");
    assert_eq!(tokens.find_family("fam-2").await.unwrap(), None);
    assert_eq!(tokens.find_access("at-2").await.unwrap(), None);
    let kept = tokens.find_refresh("rt-1").await.unwrap().unwrap();
    assert_eq!(kept.family, family("fam-1"), "the first rt-1 is untouched");

    // Tokens of a family that does not exist.
    let orphans = tokens
        .issue(&Issuance {
            family: None,
            refresh: Some(refresh("rt-orphan", "fam-x")),
            access: Some(access("at-orphan", Some("fam-x"))),
        })
        .await;
    assert!(orphans.is_err(), "{orphans:?}");
    assert_eq!(tokens.find_refresh("rt-orphan").await.unwrap(), None);
    assert_eq!(tokens.find_access("at-orphan").await.unwrap(), None);
}

pub async fn a_rotation_whose_successor_cannot_be_stored_changes_nothing(stores: &Stores) {
    let tokens = &stores.tokens;
    issue_family(stores, "fam-1", "rt-1").await;
    issue_family(stores, "fam-2", "rt-taken").await;

    let failed = tokens.rotate(&rotation("rt-1", "rt-taken", "fam-1")).await;

    assert!(failed.is_err(), "{failed:?}");
    let state = tokens.find_refresh("rt-1").await.unwrap().unwrap();
    assert_eq!(
        (state.used_at, state.successor_hash, state.successor_sealed),
        (None, None, None),
        "rt-1 is still the family's live token"
    );
    assert_eq!(
        tokens
            .find_refresh("rt-taken")
            .await
            .unwrap()
            .unwrap()
            .family,
        family("fam-2")
    );
    assert_eq!(
        tokens
            .rotate(&rotation("rt-1", "rt-2", "fam-1"))
            .await
            .unwrap(),
        RotateOutcome::Rotated
    );
}

pub async fn of_concurrent_first_keys_exactly_one_is_inserted(stores: &Stores) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let keys = stores.keys.clone();
            tokio::spawn(async move { keys.insert_first_key(&key(&format!("k{i}"), NOW)).await })
        })
        .collect();
    let mut inserted = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 1);
    let keys = stores.keys.list_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].retires_at, None);
}

pub async fn scheduling_a_key_sets_the_retirement_of_the_published_ones(stores: &Stores) {
    let keys = &stores.keys;
    assert!(keys.insert_first_key(&key("k1", NOW)).await.unwrap());
    let next = scheduled_key("k2", NOW + 5, NOW + 600);

    let outcome = keys
        .schedule_key(&next, NOW + 4_260, NOW + 5, IfKeyPending::Refuse)
        .await;

    assert_eq!(outcome, Ok(KeySchedule::Scheduled));
    assert_eq!(
        schedule_of(stores).await,
        [
            row("k1", NOW, Some(NOW + 4_260)),
            row("k2", NOW + 600, None)
        ]
    );
    assert_eq!(
        keys.list_keys().await.unwrap()[1],
        next,
        "every field round-trips"
    );
}

pub async fn a_pending_key_refuses_another_schedule_unless_told_to_retire_it(stores: &Stores) {
    let keys = &stores.keys;
    assert!(keys.insert_first_key(&key("k1", NOW)).await.unwrap());
    keys.schedule_key(
        &scheduled_key("k2", NOW, NOW + 600),
        NOW + 5_000,
        NOW,
        IfKeyPending::Refuse,
    )
    .await
    .unwrap();

    let refused = keys
        .schedule_key(
            &scheduled_key("k3", NOW + 10, NOW + 610),
            NOW + 6_000,
            NOW + 10,
            IfKeyPending::Refuse,
        )
        .await;
    assert_eq!(
        refused,
        Ok(KeySchedule::Pending {
            kid: "k2".into(),
            activates_at: NOW + 600
        })
    );
    let unchanged = [
        row("k1", NOW, Some(NOW + 5_000)),
        row("k2", NOW + 600, None),
    ];
    assert_eq!(schedule_of(stores).await, unchanged);

    // Once k2 has activated, the next one may be scheduled; k1 keeps its earlier retirement.
    let after = keys
        .schedule_key(
            &scheduled_key("k3", NOW + 600, NOW + 1_200),
            NOW + 9_000,
            NOW + 600,
            IfKeyPending::Refuse,
        )
        .await;
    assert_eq!(after, Ok(KeySchedule::Scheduled));
    assert_eq!(
        schedule_of(stores).await,
        [
            row("k1", NOW, Some(NOW + 5_000)),
            row("k2", NOW + 600, Some(NOW + 9_000)),
            row("k3", NOW + 1_200, None),
        ]
    );

    // A compromised key cannot wait: everything else, pending k3 included, retires at once.
    let immediate = keys
        .schedule_key(
            &scheduled_key("k4", NOW + 700, NOW + 700),
            NOW + 700,
            NOW + 700,
            IfKeyPending::Retire,
        )
        .await;
    assert_eq!(immediate, Ok(KeySchedule::Scheduled));
    assert_eq!(
        schedule_of(stores).await,
        [
            row("k1", NOW, Some(NOW + 700)),
            row("k2", NOW + 600, Some(NOW + 700)),
            row("k4", NOW + 700, None),
            row("k3", NOW + 1_200, Some(NOW + 700)),
        ]
    );
}

pub async fn a_taken_kid_schedules_nothing(stores: &Stores) {
    let keys = &stores.keys;
    assert!(keys.insert_first_key(&key("k1", NOW)).await.unwrap());

    let taken = keys
        .schedule_key(
            &scheduled_key("k1", NOW, NOW + 600),
            NOW + 5_000,
            NOW,
            IfKeyPending::Refuse,
        )
        .await;

    assert_eq!(taken, Err(StoreError::Conflict("kid".into())));
    assert_eq!(
        schedule_of(stores).await,
        [row("k1", NOW, None)],
        "k1 not retired"
    );
}

pub async fn a_first_key_goes_in_only_when_no_key_is_published(stores: &Stores) {
    let keys = &stores.keys;
    assert!(keys.insert_first_key(&key("k1", NOW)).await.unwrap());
    assert!(!keys.insert_first_key(&key("k2", NOW + 10)).await.unwrap());
    keys.schedule_key(
        &scheduled_key("k2", NOW, NOW + 600),
        NOW + 5_000,
        NOW,
        IfKeyPending::Refuse,
    )
    .await
    .unwrap();
    // Only the pending key is open-ended and it has not activated: it is published all the
    // same, so no first key goes in beside it, not even at the old key's retirement.
    assert!(!keys.insert_first_key(&key("k3", NOW + 10)).await.unwrap());
    assert!(
        !keys
            .insert_first_key(&key("k3", NOW + 5_000))
            .await
            .unwrap()
    );
    assert_eq!(schedule_of(stores).await.len(), 2);
}

pub async fn keys_are_listed_in_activation_order_then_insertion_order(stores: &Stores) {
    let keys = &stores.keys;
    assert!(keys.insert_first_key(&key("b", NOW + 100)).await.unwrap());
    for kid in ["z", "a"] {
        keys.schedule_key(
            &scheduled_key(kid, NOW + 100, NOW + 100),
            NOW + 200,
            NOW + 100,
            IfKeyPending::Retire,
        )
        .await
        .unwrap();
    }
    let listed: Vec<_> = schedule_of(stores).await.into_iter().map(|r| r.0).collect();
    assert_eq!(
        listed,
        ["b", "z", "a"],
        "ties keep insertion order, not kid order"
    );
}

pub async fn retired_keys_are_deleted_once_retired_long_enough(stores: &Stores) {
    let keys = &stores.keys;
    assert!(keys.insert_first_key(&key("k1", NOW)).await.unwrap());
    keys.schedule_key(
        &scheduled_key("k2", NOW, NOW + 600),
        NOW + 5_000,
        NOW,
        IfKeyPending::Refuse,
    )
    .await
    .unwrap();

    assert_eq!(keys.delete_retired_keys(NOW + 4_999).await, Ok(0));
    assert_eq!(keys.delete_retired_keys(NOW + 5_000).await, Ok(1));
    assert_eq!(schedule_of(stores).await, [row("k2", NOW + 600, None)]);
}

fn partner_key(key_id: &str, created_at: UnixTime) -> PartnerKey {
    PartnerKey {
        key_id: key_id.into(),
        sealed: format!("sealed AES key {key_id}").into_bytes(),
        created_at,
        expires_at: None,
    }
}

fn partner(code: &str, key_id: &str) -> Partner {
    Partner {
        code: code.into(),
        name: format!("partner {code}"),
        client_id: format!("client-of-{code}"),
        created_at: NOW,
        keys: vec![partner_key(key_id, NOW)],
    }
}

pub async fn partners_round_trip_with_their_first_key(stores: &Stores) {
    let partners = &stores.partners;
    let p = partner("TCONNECT", "pk-1");
    partners.create_partner(&p).await.unwrap();

    assert_eq!(partners.find_partner("TCONNECT").await.unwrap(), Some(p));
    assert_eq!(
        partners.find_partner("tconnect").await.unwrap(),
        None,
        "codes are exact"
    );
    assert_eq!(partners.find_partner("NOBODY").await.unwrap(), None);
}

pub async fn partners_are_listed_by_code(stores: &Stores) {
    let partners = &stores.partners;
    for (code, key_id) in [
        ("MERCHANT-B", "pk-b"),
        ("MERCHANT-A", "pk-a"),
        ("MERCHANT-C", "pk-c"),
    ] {
        partners
            .create_partner(&partner(code, key_id))
            .await
            .unwrap();
    }

    let listed = partners.list_partners().await.unwrap();

    assert_eq!(
        listed,
        [
            partner("MERCHANT-A", "pk-a"),
            partner("MERCHANT-B", "pk-b"),
            partner("MERCHANT-C", "pk-c"),
        ],
        "ordered by code, each with its keys"
    );
}

pub async fn a_taken_partner_code_is_a_conflict(stores: &Stores) {
    let partners = &stores.partners;
    partners
        .create_partner(&partner("P1", "pk-1"))
        .await
        .unwrap();
    let impostor = Partner {
        name: "Impostor".into(),
        ..partner("P1", "pk-2")
    };

    assert_eq!(
        partners.create_partner(&impostor).await.err(),
        Some(StoreError::Conflict("partner_code".into()))
    );
    assert_eq!(
        partners.find_partner("P1").await.unwrap(),
        Some(partner("P1", "pk-1")),
        "the first partner and its key are untouched"
    );
    // The refused partner's key was not kept either: its id is still free.
    partners
        .create_partner(&partner("P2", "pk-2"))
        .await
        .unwrap();
}

pub async fn a_new_partner_key_ends_the_current_one_and_is_listed_first(stores: &Stores) {
    let partners = &stores.partners;
    partners
        .create_partner(&partner("P1", "pk-1"))
        .await
        .unwrap();
    partners
        .create_partner(&partner("P2", "pk-other"))
        .await
        .unwrap();

    assert!(
        partners
            .add_partner_key("P1", &partner_key("pk-2", NOW + 10), NOW + 100)
            .await
            .unwrap()
    );
    assert!(
        partners
            .add_partner_key("P1", &partner_key("pk-3", NOW + 20), NOW + 200)
            .await
            .unwrap()
    );
    assert!(
        !partners
            .add_partner_key("NOBODY", &partner_key("pk-4", NOW + 30), NOW + 300)
            .await
            .unwrap(),
        "no such partner"
    );

    let p1 = partners.find_partner("P1").await.unwrap().unwrap();
    assert_eq!(
        p1.keys,
        [
            partner_key("pk-3", NOW + 20),
            PartnerKey {
                expires_at: Some(NOW + 200),
                ..partner_key("pk-2", NOW + 10)
            },
            // Ended by the first rotation; the second moves only the key that was current.
            PartnerKey {
                expires_at: Some(NOW + 100),
                ..partner_key("pk-1", NOW)
            },
        ],
        "newest first, only the newest current"
    );
    assert_eq!(
        partners.find_partner("P2").await.unwrap(),
        Some(partner("P2", "pk-other")),
        "other partners' keys are untouched"
    );
    // The unknown partner's key was not stored: its id is still free.
    partners
        .create_partner(&partner("P3", "pk-4"))
        .await
        .unwrap();
}

pub async fn deleting_a_partner_deletes_its_keys(stores: &Stores) {
    let partners = &stores.partners;
    partners
        .create_partner(&partner("P1", "pk-1"))
        .await
        .unwrap();
    partners
        .add_partner_key("P1", &partner_key("pk-2", NOW + 10), NOW + 100)
        .await
        .unwrap();
    partners
        .create_partner(&partner("P2", "pk-3"))
        .await
        .unwrap();

    assert!(partners.delete_partner("P1").await.unwrap());
    assert!(!partners.delete_partner("P1").await.unwrap());

    assert_eq!(partners.find_partner("P1").await.unwrap(), None);
    assert_eq!(
        partners.list_partners().await.unwrap(),
        [partner("P2", "pk-3")]
    );
    // Key ids are unique, so reusing both proves that the keys went with P1.
    partners
        .create_partner(&partner("P1", "pk-1"))
        .await
        .unwrap();
    partners
        .add_partner_key("P1", &partner_key("pk-2", NOW + 50), NOW + 50)
        .await
        .unwrap();
    let keys = partners.find_partner("P1").await.unwrap().unwrap().keys;
    let ids: Vec<&str> = keys.iter().map(|k| k.key_id.as_str()).collect();
    assert_eq!(ids, ["pk-2", "pk-1"]);
}

pub async fn a_taken_partner_key_id_is_a_conflict_whichever_partner_holds_it(stores: &Stores) {
    let partners = &stores.partners;
    partners
        .create_partner(&partner("P1", "pk-1"))
        .await
        .unwrap();

    assert_eq!(
        partners.create_partner(&partner("P2", "pk-1")).await.err(),
        Some(StoreError::Conflict("key_id".into()))
    );
    assert_eq!(
        partners.find_partner("P2").await.unwrap(),
        None,
        "the partner went back with its key"
    );
    assert_eq!(
        partners
            .add_partner_key("P1", &partner_key("pk-1", NOW + 10), NOW + 100)
            .await
            .err(),
        Some(StoreError::Conflict("key_id".into()))
    );
    assert_eq!(
        partners.find_partner("P1").await.unwrap(),
        Some(partner("P1", "pk-1")),
        "the current key is still current"
    );
}

pub async fn readiness_pings_the_database(stores: &Stores) {
    assert_eq!(stores.readiness.ping().await, Ok(()));
}

pub async fn writes_survive_a_reconnect(db: TestDb) {
    let TestDb { url, stores, guard } = db;
    stores
        .users
        .create_user(&new_user("u-1", "alice"))
        .await
        .unwrap();
    issue_family(&stores, "fam-1", "rt-1").await;
    drop(stores);

    let reopened = khoa_store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    assert!(
        reopened
            .users
            .find_user_by_username("alice")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        reopened
            .tokens
            .find_refresh("rt-1")
            .await
            .unwrap()
            .is_some()
    );
    drop(guard);
}

pub async fn migrations_run_twice_are_a_no_op(db: TestDb) {
    // `connect` already migrated once.
    db.stores
        .users
        .create_user(&new_user("u-1", "alice"))
        .await
        .unwrap();
    khoa_store::migrate(&db.url).await.unwrap();
    khoa_store::migrate(&db.url).await.unwrap();

    let again = khoa_store::connect(&db.url, &StoreOptions::default())
        .await
        .unwrap();
    assert!(
        again
            .users
            .find_user_by_username("alice")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        db.stores
            .users
            .find_user_by_username("alice")
            .await
            .unwrap()
            .is_some()
    );
}

/// A second node on the same database: its own `Stores`, with its own connections (and, on
/// SQLite, its own writer), as another khoa process would have.
async fn second_node(db: &TestDb) -> Stores {
    khoa_store::connect(&db.url, &StoreOptions::default())
        .await
        .expect("a second node on the same database")
}

pub async fn of_rotations_racing_on_two_nodes_exactly_one_wins(db: TestDb) {
    let nodes = [db.stores.clone(), second_node(&db).await];
    issue_family(&nodes[0], "fam-1", "rt-0").await;
    warm_up(&nodes).await;
    let start = Arc::new(Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (tokens, start) = (nodes[i % 2].tokens.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let successor = format!("rt-{}", i + 1);
                let outcome = tokens.rotate(&rotation("rt-0", &successor, "fam-1")).await;
                (successor, outcome.unwrap())
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut seen_by_losers = HashSet::new();
    for task in tasks {
        match task.await.unwrap() {
            (successor, RotateOutcome::Rotated) => winners.push(successor),
            (_, RotateOutcome::AlreadyUsed(state)) => {
                seen_by_losers.insert(state.successor_hash.unwrap());
            }
            (_, other) => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one rotation wins, on either node"
    );
    assert_eq!(
        seen_by_losers,
        HashSet::from([winners[0].clone()]),
        "the losers of both nodes see the one successor"
    );
    for node in &nodes {
        let mut stored = Vec::new();
        for i in 1..=50 {
            let hash = format!("rt-{i}");
            if node.tokens.find_refresh(&hash).await.unwrap().is_some() {
                stored.push(hash);
            }
        }
        assert_eq!(stored, winners, "the family did not fork");
    }
}

/// Has each node open its connections up front, so that racing calls start together instead of
/// one after the other behind connection set-up.
async fn warm_up(nodes: &[Stores]) {
    let pings: Vec<_> = (0..16)
        .map(|i| {
            let readiness = nodes[i % nodes.len()].readiness.clone();
            tokio::spawn(async move { readiness.ping().await })
        })
        .collect();
    for ping in pings {
        ping.await.unwrap().unwrap();
    }
}

pub async fn of_first_keys_racing_on_two_nodes_exactly_one_is_inserted(db: TestDb) {
    let nodes = [db.stores.clone(), second_node(&db).await];
    warm_up(&nodes).await;
    let start = Arc::new(Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (keys, start) = (nodes[i % 2].keys.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                keys.insert_first_key(&key(&format!("k{i}"), NOW)).await
            })
        })
        .collect();
    let mut inserted = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 1, "nodes starting together settle on one key");
    for node in &nodes {
        let keys = node.keys.list_keys().await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].retires_at, None);
    }
}

pub async fn of_schedules_racing_on_two_nodes_exactly_one_is_scheduled(db: TestDb) {
    let nodes = [db.stores.clone(), second_node(&db).await];
    assert!(
        nodes[0]
            .keys
            .insert_first_key(&key("k0", NOW))
            .await
            .unwrap()
    );
    warm_up(&nodes).await;
    let start = Arc::new(Barrier::new(10));
    let tasks: Vec<_> = (1..=10)
        .map(|i| {
            let (keys, start) = (nodes[i % 2].keys.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let next = scheduled_key(&format!("k{i}"), NOW + 1, NOW + 600);
                keys.schedule_key(&next, NOW + 5_000, NOW + 1, IfKeyPending::Refuse)
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(
            task.await
                .unwrap()
                .expect("a schedule never fails for racing another"),
        );
    }

    let keys = nodes[1].keys.list_keys().await.unwrap();
    assert_eq!(keys.len(), 2, "one rotation at a time: {keys:?}");
    let winner = &keys[1].kid;
    let scheduled = outcomes
        .iter()
        .filter(|o| **o == KeySchedule::Scheduled)
        .count();
    assert_eq!(scheduled, 1);
    for o in outcomes.iter().filter(|o| **o != KeySchedule::Scheduled) {
        assert_eq!(
            *o,
            KeySchedule::Pending {
                kid: winner.clone(),
                activates_at: NOW + 600
            },
            "the losers are told which key is pending"
        );
    }
    assert_eq!(keys[0].retires_at, Some(NOW + 5_000));
}

// ---- authorization codes ----

fn auth_code(hash: &str, expires_at: UnixTime) -> AuthCode {
    AuthCode {
        hash: hash.into(),
        client_id: "app".into(),
        subject: "user-1".into(),
        redirect_uri: "https://app.example/callback".into(),
        scope: scopes("openid user-data"),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        nonce: Some("n-0S6".into()),
        auth_time: NOW - 5,
        issued_at: NOW,
        expires_at,
    }
}

/// What one redemption of a code issues: a family, its access token, maybe a refresh token.
fn code_issuance(family_id: &str, with_refresh: bool) -> Issuance {
    Issuance {
        family: Some(family(family_id)),
        refresh: with_refresh.then(|| refresh(&format!("rt-{family_id}"), family_id)),
        access: Some(access(&format!("at-{family_id}"), Some(family_id))),
    }
}

pub async fn codes_round_trip_by_hash(stores: &Stores) {
    let with_nonce = auth_code("code-1", NOW + 60);
    let without = AuthCode {
        nonce: None,
        ..auth_code("code-2", NOW + 60)
    };
    stores.codes.create_code(&with_nonce).await.unwrap();
    stores.codes.create_code(&without).await.unwrap();

    let found = stores.codes.find_code("code-1").await.unwrap().unwrap();
    assert_eq!(found.code, with_nonce);
    assert_eq!((found.used_at, found.family_id), (None, None));
    let found = stores.codes.find_code("code-2").await.unwrap().unwrap();
    assert_eq!(found.code, without);
    assert_eq!(stores.codes.find_code("code-3").await.unwrap(), None);
}

pub async fn redeeming_a_code_stores_its_tokens_and_a_second_redemption_names_the_family(
    stores: &Stores,
) {
    stores
        .codes
        .create_code(&auth_code("code-1", NOW + 60))
        .await
        .unwrap();

    let first = stores
        .codes
        .redeem_code("code-1", NOW + 1, &code_issuance("fam-1", true))
        .await
        .unwrap();
    assert_eq!(first, RedeemOutcome::Redeemed);
    let state = stores.codes.find_code("code-1").await.unwrap().unwrap();
    assert_eq!(state.used_at, Some(NOW + 1));
    assert_eq!(state.family_id.as_deref(), Some("fam-1"));
    assert!(stores.tokens.find_family("fam-1").await.unwrap().is_some());
    assert!(
        stores
            .tokens
            .find_refresh("rt-fam-1")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        stores
            .tokens
            .find_access("at-fam-1")
            .await
            .unwrap()
            .is_some()
    );

    let second = stores
        .codes
        .redeem_code("code-1", NOW + 2, &code_issuance("fam-2", false))
        .await
        .unwrap();
    assert_eq!(
        second,
        RedeemOutcome::AlreadyUsed {
            family_id: Some("fam-1".into())
        }
    );
    assert_eq!(stores.tokens.find_family("fam-2").await.unwrap(), None);
    assert_eq!(stores.tokens.find_access("at-fam-2").await.unwrap(), None);
}

pub async fn of_concurrent_code_redemptions_exactly_one_wins(stores: &Stores) {
    stores
        .codes
        .create_code(&auth_code("code-1", NOW + 60))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let codes = stores.codes.clone();
            tokio::spawn(async move {
                let family_id = format!("fam-{i}");
                let issuance = code_issuance(&family_id, i % 2 == 0);
                let outcome = codes.redeem_code("code-1", NOW + 1, &issuance).await;
                (family_id, outcome.unwrap())
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut named_by_losers = HashSet::new();
    for task in tasks {
        match task.await.unwrap() {
            (family_id, RedeemOutcome::Redeemed) => winners.push(family_id),
            (_, RedeemOutcome::AlreadyUsed { family_id }) => {
                named_by_losers.insert(family_id.expect("the winner's family"));
            }
            (_, other) => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one redemption wins");
    assert_eq!(named_by_losers, HashSet::from([winners[0].clone()]));
    // Only the winner's tokens exist.
    for i in 0..20 {
        let family_id = format!("fam-{i}");
        let stored = stores
            .tokens
            .find_family(&family_id)
            .await
            .unwrap()
            .is_some();
        assert_eq!(stored, winners[0] == family_id, "{family_id}");
    }
}

pub async fn redeeming_an_unknown_code_is_not_found(stores: &Stores) {
    let outcome = stores
        .codes
        .redeem_code("nope", NOW, &code_issuance("fam-1", false))
        .await
        .unwrap();
    assert_eq!(outcome, RedeemOutcome::NotFound);
    assert_eq!(stores.tokens.find_family("fam-1").await.unwrap(), None);
}

pub async fn a_redemption_whose_tokens_cannot_be_stored_leaves_the_code_unused(stores: &Stores) {
    stores
        .codes
        .create_code(&auth_code("code-1", NOW + 60))
        .await
        .unwrap();
    issue_family(stores, "fam-1", "rt-1").await;

    // The family id is taken: the redemption cannot store its tokens.
    let failed = stores
        .codes
        .redeem_code("code-1", NOW + 1, &code_issuance("fam-1", false))
        .await;

    assert!(failed.is_err(), "{failed:?}");
    let state = stores.codes.find_code("code-1").await.unwrap().unwrap();
    assert_eq!((state.used_at, state.family_id), (None, None));
    assert_eq!(stores.tokens.find_access("at-fam-1").await.unwrap(), None);
    assert_eq!(
        stores
            .codes
            .redeem_code("code-1", NOW + 2, &code_issuance("fam-2", false))
            .await
            .unwrap(),
        RedeemOutcome::Redeemed,
        "the code can still be redeemed"
    );
}

pub async fn purge_removes_expired_codes(stores: &Stores) {
    for (hash, expires_at) in [("old", NOW - 1), ("live", NOW + 60)] {
        stores
            .codes
            .create_code(&auth_code(hash, expires_at))
            .await
            .unwrap();
    }
    let deleted = stores.tokens.purge_expired(NOW, 100).await.unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(stores.codes.find_code("old").await.unwrap(), None);
    assert!(stores.codes.find_code("live").await.unwrap().is_some());
}

// ---- failed sign-ins ----

const LOCKOUT: LockoutPolicy = LockoutPolicy {
    threshold: 3,
    base_secs: 10,
    max_secs: 100,
};

/// The state of a reservation that must have been let through.
#[track_caller]
fn reserved(attempt: LoginAttempt) -> LoginFailures {
    match attempt {
        LoginAttempt::Reserved(state) => state,
        LoginAttempt::Locked(state) => panic!("refused for a lock: {state:?}"),
    }
}

pub async fn login_failures_count_lock_per_policy_and_clear(stores: &Stores) {
    let f = &stores.login_failures;
    assert_eq!(f.find_login_failures("alice").await.unwrap(), None);
    // Each attempt reserved once the previous lock has expired (or a second after the last
    // failure): every reservation is a failure until cleared, and the store's SQL must agree
    // with lock_secs.
    let mut now = 1_000;
    for n in 1..=40u32 {
        let state = reserved(
            f.reserve_login_attempt("alice", now, &LOCKOUT)
                .await
                .unwrap(),
        );
        assert_eq!(state.username, "alice");
        assert_eq!(state.failures, n);
        assert_eq!(state.last_failure_at, now);
        assert_eq!(
            state.locked_until,
            LOCKOUT.lock_secs(n).map(|s| now + s),
            "failure {n}"
        );
        assert_eq!(
            f.find_login_failures("alice").await.unwrap(),
            Some(state.clone())
        );
        if let Some(until) = state.locked_until {
            // During the lock an attempt is refused and changes nothing: no count, no longer
            // lock.
            let refused = f.reserve_login_attempt("alice", until - 1, &LOCKOUT).await;
            assert_eq!(refused.unwrap(), LoginAttempt::Locked(state.clone()));
            assert_eq!(f.find_login_failures("alice").await.unwrap(), Some(state));
        }
        now = f
            .find_login_failures("alice")
            .await
            .unwrap()
            .and_then(|s| s.locked_until)
            .unwrap_or(now + 1);
    }
    // Another name is counted on its own.
    let bob = reserved(
        f.reserve_login_attempt("bob", 2_000, &LOCKOUT)
            .await
            .unwrap(),
    );
    assert_eq!((bob.failures, bob.locked_until), (1, None));
    assert!(f.clear_login_failures("alice").await.unwrap());
    assert!(!f.clear_login_failures("alice").await.unwrap());
    assert_eq!(f.find_login_failures("alice").await.unwrap(), None);
    assert!(f.find_login_failures("bob").await.unwrap().is_some());
    // A threshold of one locks at the first failure.
    let one = LockoutPolicy {
        threshold: 1,
        ..LOCKOUT
    };
    let carol = reserved(f.reserve_login_attempt("carol", 3_000, &one).await.unwrap());
    assert_eq!(carol.locked_until, Some(3_010));
}

/// Also the crash case: reservations whose outcome never came (a node died during the check)
/// are failures like the others, and are forgotten with them.
pub async fn old_login_failures_restart_the_count(stores: &Stores) {
    let f = &stores.login_failures;
    for now in [1_000, 1_001, 1_002] {
        reserved(
            f.reserve_login_attempt("alice", now, &LOCKOUT)
                .await
                .unwrap(),
        );
    }
    let locked = f.find_login_failures("alice").await.unwrap().unwrap();
    assert_eq!((locked.failures, locked.locked_until), (3, Some(1_012)));
    // More than max_secs after the last failure: the count starts again, the lock is gone.
    let state = reserved(
        f.reserve_login_attempt("alice", 1_002 + 101, &LOCKOUT)
            .await
            .unwrap(),
    );
    assert_eq!((state.failures, state.locked_until), (1, None));
    // And the purge takes a name whose unresolved reservations are that old.
    reserved(
        f.reserve_login_attempt("crashed", 1_000, &LOCKOUT)
            .await
            .unwrap(),
    );
    assert_eq!(f.purge_login_failures(1_001, 1_102, 100).await.unwrap(), 1);
    assert_eq!(f.find_login_failures("crashed").await.unwrap(), None);
}

pub async fn of_concurrent_reservations_exactly_threshold_are_let_through(stores: &Stores) {
    reserve_concurrently(std::slice::from_ref(stores)).await;
}

pub async fn reservations_racing_on_two_nodes_let_exactly_threshold_through(db: TestDb) {
    let nodes = [db.stores.clone(), second_node(&db).await];
    warm_up(&nodes).await;
    reserve_concurrently(&nodes).await;
}

/// 40 reservations of one name at once, spread over `nodes`: exactly `threshold` are let
/// through, each with its own count, the others are refused for the lock, and the lock is the
/// first one (`base_secs`), not one escalated by the 37 refused (issue 13 §4).
async fn reserve_concurrently(nodes: &[Stores]) {
    let start = Arc::new(Barrier::new(40));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (f, start) = (nodes[i % nodes.len()].login_failures.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                f.reserve_login_attempt("alice", 5_000, &LOCKOUT)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let (mut counts, mut refused) = (Vec::new(), 0);
    for t in tasks {
        match t.await.unwrap() {
            LoginAttempt::Reserved(state) => counts.push(state.failures),
            LoginAttempt::Locked(state) => {
                assert_eq!(state.locked_until, Some(5_000 + LOCKOUT.base_secs));
                refused += 1;
            }
        }
    }
    counts.sort();
    assert_eq!(
        counts,
        [1, 2, 3],
        "exactly threshold let through, each its own count"
    );
    assert_eq!(refused, 37);
    let state = nodes[0]
        .login_failures
        .find_login_failures("alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.failures, LOCKOUT.threshold);
    assert_eq!(state.locked_until, Some(5_000 + LOCKOUT.base_secs));
}

pub async fn purge_removes_old_unlocked_login_failures_only(stores: &Stores) {
    let f = &stores.login_failures;
    // old: one failure long ago; locked: old failures but still locked at `now`; recent.
    f.reserve_login_attempt("old", 100, &LOCKOUT).await.unwrap();
    let long_lock = LockoutPolicy {
        threshold: 1,
        base_secs: 10_000,
        max_secs: 10_000,
    };
    f.reserve_login_attempt("locked", 100, &long_lock)
        .await
        .unwrap();
    f.reserve_login_attempt("recent", 950, &LOCKOUT)
        .await
        .unwrap();
    for i in 0..5 {
        f.reserve_login_attempt(&format!("old-{i}"), 200, &LOCKOUT)
            .await
            .unwrap();
    }
    let (before, now) = (900, 1_000);
    assert_eq!(
        f.purge_login_failures(before, now, 4).await.unwrap(),
        4,
        "one batch"
    );
    assert_eq!(f.purge_login_failures(before, now, 100).await.unwrap(), 2);
    assert_eq!(f.purge_login_failures(before, now, 100).await.unwrap(), 0);
    assert!(f.find_login_failures("locked").await.unwrap().is_some());
    assert!(f.find_login_failures("recent").await.unwrap().is_some());
    assert_eq!(f.find_login_failures("old").await.unwrap(), None);
}

fn audit_event(at: UnixTime, kind: AuditKind, subject: &str, client: &str) -> AuditEvent {
    AuditEvent::new(at, kind, serde_json::json!({ "n": at }))
        .subject(subject)
        .client(client)
}

fn all_audit() -> AuditFilter {
    AuditFilter {
        limit: 1000,
        ..AuditFilter::default()
    }
}

pub async fn audit_events_round_trip_newest_first(stores: &Stores) {
    let audit = &stores.audit;
    let mut first = audit_event(NOW, AuditKind::TokenIssued, "user-1", "app");
    first.node = Some("node-a".into());
    audit.record(first.clone()).await.unwrap();
    // Same second: insertion order breaks the tie, newest first.
    audit
        .record(audit_event(NOW, AuditKind::Revocation, "user-1", "app"))
        .await
        .unwrap();
    audit
        .record(audit_event(
            NOW - 10,
            AuditKind::LoginSuccess,
            "user-1",
            "app",
        ))
        .await
        .unwrap();
    let mut anonymous = AuditEvent::new(NOW - 5, AuditKind::KeyRotation, serde_json::json!({}));
    anonymous.detail = r#"{"kid":"k1"}"#.into();
    audit.record(anonymous).await.unwrap();
    audit.flush().await.unwrap();

    let listed = audit.list_audit(&all_audit()).await.unwrap();
    let kinds: Vec<AuditKind> = listed.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            AuditKind::Revocation,
            AuditKind::TokenIssued,
            AuditKind::KeyRotation,
            AuditKind::LoginSuccess
        ]
    );
    let stored = &listed[1];
    assert!(stored.id > 0);
    assert_eq!(
        (stored.at, &stored.subject, &stored.client_id, &stored.node),
        (NOW, &first.subject, &first.client_id, &first.node)
    );
    let detail: serde_json::Value = serde_json::from_str(&stored.detail).unwrap();
    assert_eq!(detail, serde_json::json!({ "n": NOW }));
    assert_eq!(listed[2].subject, None);
    assert_eq!(listed[2].client_id, None);
    let detail: serde_json::Value = serde_json::from_str(&listed[2].detail).unwrap();
    assert_eq!(detail, serde_json::json!({ "kid": "k1" }));

    let two = AuditFilter {
        limit: 2,
        ..AuditFilter::default()
    };
    let listed = audit.list_audit(&two).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].kind, AuditKind::Revocation);
}

pub async fn audit_events_filter_by_subject_client_kind_and_time(stores: &Stores) {
    let audit = &stores.audit;
    for (at, kind, subject, client) in [
        (NOW, AuditKind::LoginFailure, "alice", "app"),
        (NOW + 1, AuditKind::LoginSuccess, "alice", "app"),
        (NOW + 2, AuditKind::TokenIssued, "alice", "other"),
        (NOW + 3, AuditKind::TokenIssued, "bob", "app"),
    ] {
        audit
            .record(audit_event(at, kind, subject, client))
            .await
            .unwrap();
    }
    let ats = |filter: AuditFilter| async move {
        let filter = AuditFilter {
            limit: 100,
            ..filter
        };
        let listed = stores.audit.list_audit(&filter).await.unwrap();
        listed.iter().map(|e| e.at - NOW).collect::<Vec<_>>()
    };
    let by_subject = AuditFilter {
        subject: Some("alice".into()),
        ..AuditFilter::default()
    };
    assert_eq!(ats(by_subject).await, [2, 1, 0]);
    let by_client = AuditFilter {
        client_id: Some("app".into()),
        ..AuditFilter::default()
    };
    assert_eq!(ats(by_client).await, [3, 1, 0]);
    let by_kind = AuditFilter {
        kind: Some(AuditKind::TokenIssued),
        ..AuditFilter::default()
    };
    assert_eq!(ats(by_kind).await, [3, 2]);
    let by_time = AuditFilter {
        since: Some(NOW + 1),
        until: Some(NOW + 2),
        ..AuditFilter::default()
    };
    assert_eq!(ats(by_time).await, [2, 1]);
    let all_at_once = AuditFilter {
        subject: Some("alice".into()),
        client_id: Some("app".into()),
        kind: Some(AuditKind::LoginFailure),
        since: Some(NOW),
        until: Some(NOW),
        limit: 0,
    };
    assert_eq!(ats(all_at_once).await, [0]);
    let nobody = AuditFilter {
        subject: Some("carol".into()),
        ..AuditFilter::default()
    };
    assert_eq!(ats(nobody).await, Vec::<i64>::new());
}

/// One `admin` event at each of `ats`, in that order, committed.
async fn record_admin_events(stores: &Stores, ats: &[UnixTime]) {
    for &at in ats {
        stores
            .audit
            .record(audit_event(at, AuditKind::Admin, "x", "y"))
            .await
            .unwrap();
    }
    stores.audit.flush().await.unwrap();
}

pub async fn audit_purge_removes_old_events_in_batches(stores: &Stores) {
    let audit = &stores.audit;
    record_admin_events(stores, &[NOW - 30, NOW - 20, NOW - 10, NOW]).await;
    assert_eq!(audit.purge_audit(NOW - 5, 2).await.unwrap(), 2);
    assert_eq!(audit.purge_audit(NOW - 5, 2).await.unwrap(), 1);
    assert_eq!(audit.purge_audit(NOW - 5, 2).await.unwrap(), 0);
    let left = audit.list_audit(&all_audit()).await.unwrap();
    assert_eq!(left.iter().map(|e| e.at).collect::<Vec<_>>(), [NOW]);
}

pub async fn audit_purge_takes_the_oldest_events_first(stores: &Stores) {
    let audit = &stores.audit;
    // Recorded out of order (several nodes, each with its own clock).
    record_admin_events(stores, &[NOW - 10, NOW - 30, NOW, NOW - 20]).await;

    assert_eq!(audit.purge_audit(NOW - 5, 2).await.unwrap(), 2);

    let left = audit.list_audit(&all_audit()).await.unwrap();
    assert_eq!(
        left.iter().map(|e| e.at).collect::<Vec<_>>(),
        [NOW, NOW - 10]
    );
}

pub async fn an_event_recorded_after_a_purge_is_the_newest(stores: &Stores) {
    let audit = &stores.audit;
    for (at, kind) in [
        (NOW - 20, AuditKind::Admin),
        (NOW - 10, AuditKind::Admin),
        (NOW, AuditKind::LoginFailure),
    ] {
        audit.record(audit_event(at, kind, "x", "y")).await.unwrap();
    }
    audit.flush().await.unwrap();
    assert_eq!(audit.purge_audit(NOW - 5, 100).await.unwrap(), 2);

    audit
        .record(audit_event(NOW, AuditKind::LoginSuccess, "x", "y"))
        .await
        .unwrap();
    audit.flush().await.unwrap();

    let listed = audit.list_audit(&all_audit()).await.unwrap();
    let kinds: Vec<AuditKind> = listed.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [AuditKind::LoginSuccess, AuditKind::LoginFailure],
        "same second: the later-recorded first"
    );
    assert_ne!(
        listed[0].id, listed[1].id,
        "a purged event's id is not handed out again"
    );
}

pub async fn readiness_reports_the_pool(stores: &Stores) {
    stores.readiness.ping().await.unwrap();
    let pool = stores.readiness.pool_connections().expect("a pool");
    assert!(
        pool.open >= 1 && pool.idle <= pool.open && pool.open <= pool.max,
        "{pool:?}"
    );
}

fn client_key(client: &str, kid: &str, created_at: UnixTime) -> ClientKey {
    ClientKey {
        client_id: client.into(),
        kid: kid.into(),
        alg: "RS256".into(),
        material: vec![0x30, 0x82, kid.len() as u8],
        created_at,
    }
}

pub async fn client_keys_round_trip_newest_first_and_a_taken_kid_is_a_conflict(stores: &Stores) {
    let s = &stores.client_keys;
    s.add_client_key(&client_key("snap", "k1", 100))
        .await
        .unwrap();
    s.add_client_key(&client_key("snap", "k2", 200))
        .await
        .unwrap();
    s.add_client_key(&client_key("other", "k1", 100))
        .await
        .unwrap();
    let keys = s.client_keys("snap").await.unwrap();
    assert_eq!(
        keys,
        vec![client_key("snap", "k2", 200), client_key("snap", "k1", 100)]
    );
    assert!(matches!(
        s.add_client_key(&client_key("snap", "k1", 300)).await,
        Err(StoreError::Conflict(c)) if c == "client_key"
    ));
    assert!(s.delete_client_key("snap", "k1").await.unwrap());
    assert!(!s.delete_client_key("snap", "k1").await.unwrap());
    assert_eq!(s.client_keys("snap").await.unwrap().len(), 1);
    assert!(s.client_keys("nobody").await.unwrap().is_empty());
}

pub async fn keys_are_listed_newest_first_by_creation_not_by_insertion(stores: &Stores) {
    let s = &stores.client_keys;
    s.add_client_key(&client_key("snap", "k-new", 200))
        .await
        .unwrap();
    s.add_client_key(&client_key("snap", "k-old", 100))
        .await
        .unwrap();
    let kids: Vec<String> = s
        .client_keys("snap")
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["k-new", "k-old"]);

    let partners = &stores.partners;
    partners
        .create_partner(&partner("P1", "pk-new"))
        .await
        .unwrap();
    partners
        .add_partner_key("P1", &partner_key("pk-old", NOW - 10), NOW + 100)
        .await
        .unwrap();
    let keys = partners.find_partner("P1").await.unwrap().unwrap().keys;
    let ids: Vec<&str> = keys.iter().map(|k| k.key_id.as_str()).collect();
    assert_eq!(ids, ["pk-new", "pk-old"]);
}

pub async fn a_signature_is_used_once_until_it_expires(stores: &Stores) {
    let s = &stores.client_keys;
    assert!(s.use_signature("d1", 1_000, 500).await.unwrap());
    assert!(
        !s.use_signature("d1", 1_000, 600).await.unwrap(),
        "a replay"
    );
    assert!(s.use_signature("d2", 1_000, 600).await.unwrap());
    // Once expired it is forgotten (the freshness window refuses it by then anyway).
    assert!(s.use_signature("d1", 2_000, 1_000).await.unwrap());
}

pub async fn of_concurrent_uses_of_one_signature_exactly_one_wins(stores: &Stores) {
    let barrier = Arc::new(Barrier::new(8));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (s, b) = (stores.client_keys.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            s.use_signature("same", 1_000, 10).await.unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}
