//! The suite on PostgreSQL: one throwaway cluster for this test binary (started by the first
//! test that needs it, stopped when the binary exits), a fresh database in it per test. Without
//! a PostgreSQL server these tests fail; they never pass by skipping.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use khoa_core::store::{RotateOutcome, StoreError};
use khoa_pgtest::PgCluster;
use khoa_store::StoreOptions;
use sqlx::{Connection, PgConnection, Row};

use crate::suite::{self, TestDb};

/// A new, empty database in the shared cluster.
async fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!("khoa_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    // initdb, pg_ctl and createdb are processes to wait for: not on a runtime thread.
    tokio::task::spawn_blocking(move || PgCluster::shared().create_database(&name))
        .await
        .expect("creating a database panicked")
}

async fn fresh() -> TestDb {
    let url = fresh_database().await;
    let stores = khoa_store::connect(&url, &StoreOptions::default())
        .await
        .expect("a fresh PostgreSQL store");
    // The database lives as long as the cluster, which outlives every test.
    TestDb {
        url,
        stores,
        guard: Box::new(()),
    }
}

crate::suite::conformance_tests!(fresh);

/// Outages are short here, and must cost a request no more than this.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_is_unavailable_at_once_and_served_again_when_it_returns() {
    // A cluster of its own: stopping the shared one would fail the other tests.
    let cluster = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let opts = StoreOptions {
        busy_timeout: BUSY_TIMEOUT,
        ..StoreOptions::default()
    };
    let stores = khoa_store::connect(&cluster.url(), &opts).await.unwrap();
    assert_eq!(stores.readiness.ping().await, Ok(()));

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .unwrap();
    let asked = Instant::now();
    let ping = stores.readiness.ping().await;
    assert!(matches!(ping, Err(StoreError::Unavailable(_))), "{ping:?}");
    assert!(
        asked.elapsed() < 2 * BUSY_TIMEOUT,
        "an outage costs a request the busy timeout, not a hang: {:?}",
        asked.elapsed()
    );
    let asked = Instant::now();
    let write = stores.tokens.revoke_family("fam-1", 0).await;
    assert!(
        matches!(write, Err(StoreError::Unavailable(_))),
        "{write:?}"
    );
    assert!(asked.elapsed() < 2 * BUSY_TIMEOUT, "{:?}", asked.elapsed());

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again();
        cluster
    })
    .await
    .unwrap();
    // The same stores, no reconnecting by hand: the pool drops its dead connections and
    // opens new ones.
    assert_eq!(stores.readiness.ping().await, Ok(()));
    assert_eq!(stores.tokens.revoke_family("fam-1", 0).await, Ok(false));
    drop(stores);
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

/// Polls until a session of the database behind `url` waits for a lock (another transaction's
/// row), so that a test can let that transaction go knowing the race really took place.
async fn until_a_session_waits_for_a_lock(url: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no session ever waited for a lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_key_racing_an_uncommitted_one_waits_for_it_and_is_not_inserted() {
    // The window the concurrent cases can hardly hit: another node's first key is inserted but
    // not yet committed, so our NOT EXISTS cannot see it.
    let db = fresh().await;
    let mut other_node = PgConnection::connect(&db.url).await.unwrap();
    let mut theirs = other_node.begin().await.unwrap();
    // What the other node's insert_first_key does: take the store's advisory lock on the
    // signing keys ("khoakeys"), then insert.
    sqlx::query("SELECT pg_advisory_xact_lock(x'6b686f616b657973'::bigint)")
        .execute(&mut *theirs)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO signing_keys (kid, alg, private_sealed, public_jwk, created_at, activates_at) \
         VALUES ('theirs', 'EdDSA', '\\x00', '{}', 1, 1)",
    )
    .execute(&mut *theirs)
    .await
    .unwrap();

    let keys = db.stores.keys.clone();
    let ours = tokio::spawn(async move { keys.insert_first_key(&suite::key("ours", 2)).await });
    until_a_session_waits_for_a_lock(&db.url).await;
    theirs.commit().await.unwrap();

    assert_eq!(
        ours.await.unwrap(),
        Ok(false),
        "not an error: the other node won"
    );
    let kids: Vec<_> = db
        .stores
        .keys
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.kid, k.retires_at))
        .collect();
    assert_eq!(kids, [("theirs".to_owned(), None)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_racing_an_uncommitted_one_waits_for_it_and_sees_its_successor() {
    // Another node has redeemed rt-1 but not committed yet: our conditional UPDATE must wait
    // for it, then miss, and report the successor it lost to.
    let db = fresh().await;
    suite::issue_family(&db.stores, "fam-1", "rt-1").await;
    let mut other_node = PgConnection::connect(&db.url).await.unwrap();
    let mut theirs = other_node.begin().await.unwrap();
    sqlx::query(
        "UPDATE refresh_tokens SET used_at = 7, successor_hash = 'rt-theirs', \
         successor_sealed = '\\x00' WHERE hash = 'rt-1' AND used_at IS NULL",
    )
    .execute(&mut *theirs)
    .await
    .unwrap();

    let tokens = db.stores.tokens.clone();
    let ours = tokio::spawn(async move {
        tokens
            .rotate(&suite::rotation("rt-1", "rt-ours", "fam-1"))
            .await
    });
    until_a_session_waits_for_a_lock(&db.url).await;
    theirs.commit().await.unwrap();

    match ours.await.unwrap() {
        Ok(RotateOutcome::AlreadyUsed(state)) => {
            assert_eq!(state.used_at, Some(7));
            assert_eq!(state.successor_hash.as_deref(), Some("rt-theirs"));
        }
        other => panic!("expected AlreadyUsed, got {other:?}"),
    }
    assert_eq!(
        db.stores.tokens.find_refresh("rt-ours").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn connecting_to_no_database_fails_fast_and_says_why() {
    // A port nobody listens on: bound, read and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("postgres://khoa:secret@127.0.0.1:{port}/khoa");
    let opts = StoreOptions {
        busy_timeout: BUSY_TIMEOUT,
        ..StoreOptions::default()
    };

    let asked = Instant::now();
    let err = khoa_store::connect(&url, &opts).await.err();

    match err {
        Some(StoreError::Unavailable(why)) => {
            assert!(why.to_lowercase().contains("refused"), "{why}");
            assert!(!why.contains("secret"), "{why}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(asked.elapsed() < 3 * BUSY_TIMEOUT, "{:?}", asked.elapsed());
}

#[tokio::test]
async fn purge_and_cascade_columns_lead_an_index() {
    let url = fresh_database().await;
    khoa_store::migrate(&url).await.unwrap();
    let mut conn = PgConnection::connect(&url).await.unwrap();
    // The first column of every index, per table.
    let rows = sqlx::query(
        "SELECT t.relname AS tbl, a.attname AS col \
         FROM pg_index i \
         JOIN pg_class t ON t.oid = i.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0] \
         WHERE n.nspname = current_schema()",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let leading: Vec<(String, String)> =
        rows.iter().map(|r| (r.get("tbl"), r.get("col"))).collect();

    // What purge_expired selects by, and the foreign keys that deletes cascade through.
    for (table, column) in [
        ("access_tokens", "expires_at"),
        ("refresh_tokens", "expires_at"),
        ("token_families", "session_expires_at"),
        ("access_tokens", "family_id"),
        ("refresh_tokens", "family_id"),
        ("partner_keys", "partner_code"),
    ] {
        assert!(
            leading.contains(&(table.to_owned(), column.to_owned())),
            "no index leads with {table}.{column}"
        );
    }
}
