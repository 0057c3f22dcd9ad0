//! The partner envelope of seed 002: `hex(IV || AES-256-CBC(json))`, decoded, decrypted under
//! a partner key and parsed as the partner dialect does (`khoa_core::envelope`).
#![no_main]

use khoa_core::envelope::{decode_hex, open};
use khoa_fuzz::ENVELOPE_KEY;
use khoa_server::wire::json_object;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(hex) = std::str::from_utf8(data) else {
        return;
    };
    let Some(envelope) = decode_hex(hex) else {
        return;
    };
    if let Some(plaintext) = open(&ENVELOPE_KEY, &envelope) {
        let _ = json_object(&plaintext);
    }
    // A wrong key must fail cleanly too.
    let _ = open(&[0u8; 32], &envelope);
});
