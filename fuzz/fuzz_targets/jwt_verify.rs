//! Compact JWS access tokens: header, claims and Ed25519 signature checks against a ring with
//! one key (`khoa_core::keys::KeyRing`). The seeds are tokens that ring signed.
#![no_main]

use khoa_fuzz::{AUDIENCE, ISSUER, NOW, ring};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let ring = ring();
    let _ = ring.kid_unknown(token);
    let _ = ring.verify_signature(token, NOW);
    let _ = ring.verify(token, ISSUER, AUDIENCE, NOW);
});
