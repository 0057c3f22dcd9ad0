//! `application/x-www-form-urlencoded` bodies of the token, revocation and introspection
//! endpoints (`khoa_server::wire::parse_form`).
#![no_main]

use khoa_server::wire::{FormError, parse_form};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match parse_form(body) {
        // RFC 6749 §3.1: an empty value counts as absent, so none is ever returned.
        Ok(form) => assert!(form.values().all(|v| !v.is_empty())),
        Err(FormError::NotUtf8 | FormError::Repeated(_)) => {}
    }
});
