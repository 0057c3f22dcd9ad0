//! The suite on SQLite: a fresh file in a fresh temporary directory per test.

use khoa_store::StoreOptions;

use crate::suite::TestDb;

async fn fresh() -> TestDb {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("khoa.db").display());
    let stores = khoa_store::connect(&url, &StoreOptions::default())
        .await
        .expect("a fresh SQLite store");
    TestDb {
        url,
        stores,
        guard: Box::new(dir),
    }
}

crate::suite::conformance_tests!(fresh);
