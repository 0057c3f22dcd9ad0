//! The storage conformance suite: every backend must pass the same cases, written once against
//! the `Stores` bundle in `suite.rs` (after hydra's `manager_test_helpers.go`). Each backend
//! module only says how to make a fresh database and expands `conformance_tests!`, then adds
//! the cases only its backend has (PostgreSQL: the database going away and coming back).
//! `memory.rs` runs the cases over `&Stores` on `khoa-core`'s in-memory test store as well, so
//! that it cannot drift from the real backends.

mod memory;
mod postgres;
mod sqlite;
mod suite;
