//! The JSON bodies of the dialects, through the same functions their `parse` uses:
//! derivative (seed 000) `{"username","password"}`; partner (seed 002) `{"data"}` outside and
//! `{"refresh_token"}` inside the envelope; bank-hub (001) and VietQR (004) accept only an
//! empty body or `{}` (`khoa_server::wire::{json_object, string_field, is_empty_body}`).
#![no_main]

use khoa_server::wire::{Field, is_empty_body, json_object, string_field};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Some(obj) = json_object(body) {
        for name in ["username", "password", "data", "refresh_token"] {
            match string_field(&obj, name) {
                Field::Str(s) => assert_eq!(obj.get(name).and_then(|v| v.as_str()), Some(s)),
                Field::Missing | Field::Invalid => {}
            }
        }
    }
    let _ = is_empty_body(body);
});
