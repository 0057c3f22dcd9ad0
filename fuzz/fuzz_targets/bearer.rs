//! Bearer tokens as the protected resource, introspection and forward-auth see them: the
//! `Authorization` header parsed (`khoa_server::wire::parse_authorization`), then the whole
//! `Tokens::validate_bearer` — the JWT path and the opaque, hex40 and account shapes
//! (`khoa_core::mint::parse_account_token`) — on an in-memory engine holding one live token
//! of each format. Input: the header value; with no `Bearer ` prefix it is tried as a token.
#![no_main]

use khoa_core::mint::parse_account_token;
use khoa_fuzz::fixture;
use khoa_server::wire::{Authorization, parse_authorization};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let token = match parse_authorization(Some(data), false) {
        Authorization::Bearer(token) => token,
        _ => match std::str::from_utf8(data) {
            Ok(s) => s.to_owned(),
            Err(_) => return,
        },
    };
    let _ = parse_account_token(&token);
    let f = fixture();
    let _ = f
        .runtime
        .block_on(f.engine.tokens().validate_bearer(&token));
});
