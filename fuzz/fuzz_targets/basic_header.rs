//! `Authorization` header values (Basic with and without RFC 6749 §2.3.1 form-encoding,
//! Bearer, anything else) and `Content-Type` values, as every dialect reads them
//! (`khoa_server::wire`), and the whole request reader (`khoa_dialect::read::read`) of the
//! built-in endpoints that authenticate with Basic alone (bank-hub, VietQR).
#![no_main]

use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use khoa_dialect::read::read;
use khoa_fuzz::basic_endpoints;
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
    // What axum hands the bank-hub and VietQR endpoints: only values HTTP allows, no body.
    if let Ok(v) = HeaderValue::from_bytes(value) {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, v);
        for endpoint in basic_endpoints() {
            if let Ok(request) = read(endpoint, &headers, b"") {
                // A Basic-only endpoint reads its client from the header or refuses.
                assert!(request.basic.is_some());
            }
        }
    }
});
