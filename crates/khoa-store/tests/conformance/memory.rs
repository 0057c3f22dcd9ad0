//! The suite on `khoa-core`'s in-memory store, which the engine's unit tests run on: every case
//! over `&Stores`, so that those tests cannot come to rely on behaviour no real backend has.
//! Not the cases about a database (a reconnect, migrations, a second node on it): there is none.
//! Nor `readiness_reports_the_pool`: it has no connection pool, and says so (`None`).

use khoa_core::store::Stores;
use khoa_core::testing::MemoryStore;

async fn fresh() -> Stores {
    MemoryStore::stores()
}

crate::suite::conformance_tests!(stores: fresh);
