//! `Authorization` header values (Basic with and without RFC 6749 §2.3.1 form-encoding,
//! Bearer, anything else) and `Content-Type` values, as every dialect reads them
//! (`khoa_server::wire`, `khoa_server::dialects::basic_client_credentials`).
#![no_main]

use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use khoa_server::dialects::basic_client_credentials;
use khoa_server::wire::{Authorization, content_type_is, parse_authorization};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &[u8]| {
    for form_encoded in [true, false] {
        if let Authorization::Bearer(token) = parse_authorization(Some(value), form_encoded) {
            assert!(!token.is_empty());
        }
    }
    content_type_is(Some(value), "application/x-www-form-urlencoded");
    content_type_is(Some(value), "application/json");
    // What axum hands the bank-hub and VietQR dialects: only values HTTP allows.
    if let Ok(v) = HeaderValue::from_bytes(value) {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, v);
        let _ = basic_client_credentials(&headers);
    }
});
