//! The wire dialects: one file each, each a thin adapter (parse → engine → render). None holds
//! token logic; adding a dialect is one file here plus its routes in [`crate::startup`].

pub mod oauth2;
