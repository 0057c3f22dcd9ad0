//! khoa's dialect definitions: a partner's token API as data.
//!
//! A dialect is one TOML file (`docs/dialects.md`): each endpoint's path, the grant it runs,
//! where each engine input is read, the success template, and the error template with a case
//! per kind of refusal. This crate loads and validates definitions, reads requests as they say
//! and renders answers; it knows nothing of the engine or of HTTP servers, so the server's
//! generic adapter and the client side share it.
//!
//! # Layout
//!
//! - [`def`]: the file's types, as serde reads them; [`schema`] derives the JSON Schema.
//! - [`load`](mod@load): text → settings resolved → typed → validated [`Dialect`], or a
//!   [`DefinitionError`] with file, line and key.
//! - [`template`]: typed JSON templates (`{expires_in}`, filters, optional members).
//! - [`read`]: a request's headers and body → the engine inputs, or a [`Refused`].
//! - [`render`]: issued tokens or a refusal → status, headers, body.
//! - [`refusal`]: the kinds of refusal and their fallback tree.
//! - [`wire`]: strict parsers for forms and `Authorization` headers.
//! - `dialects/*.toml`: the built-in definitions ([`BUILT_IN`]).

#![forbid(unsafe_code)]

pub mod def;
pub mod load;
pub mod read;
pub mod refusal;
pub mod render;
pub mod template;
pub mod wire;

pub use load::{DefinitionError, Dialect, Origin, load};

/// The built-in definitions (`crates/khoa-dialect/dialects/*.toml`), by name: the five partner
/// documents' and standard OAuth 2.0's. The server serves them; the client calls them.
pub const BUILT_IN: [(&str, &str); 5] = [
    ("oauth2", include_str!("../dialects/oauth2.toml")),
    ("derivative", include_str!("../dialects/derivative.toml")),
    ("bankhub", include_str!("../dialects/bankhub.toml")),
    ("partner", include_str!("../dialects/partner.toml")),
    ("vietqr", include_str!("../dialects/vietqr.toml")),
];

/// The text of the built-in definition `name`.
pub fn built_in(name: &str) -> Option<&'static str> {
    BUILT_IN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}
pub use refusal::{Kind, Refused};

/// The JSON Schema of a definition file (`khoa dialect schema`), for editors that validate
/// and complete TOML against one.
pub fn schema() -> serde_json::Value {
    let mut s =
        serde_json::to_value(schemars::schema_for!(def::Definition)).expect("a schema serialises");
    s["title"] = "khoa dialect definition".into();
    s
}
