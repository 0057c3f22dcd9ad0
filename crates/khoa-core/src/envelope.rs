//! The partner envelope of seed 002: `hex(IV || AES-256-CBC(json, PKCS#7))` under the partner's
//! 32-byte key.
//!
//! CBC without a MAC is what the partner document prescribes, so the endpoint must not become a
//! padding oracle: every failure (bad hex, bad length, bad padding, wrong key) is reported as
//! one indistinguishable error, and the JSON that follows is parsed only after decryption
//! succeeded under some key.

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

const BLOCK: usize = 16;

/// Encrypts `plaintext` with a fresh IV; the result is lowercase hex. Used by tests and by
/// `khoa`'s own tooling, the mirror of what a partner's client does.
pub fn seal_hex(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8]) -> String {
    let ct = cbc::Encryptor::<Aes256>::new(key.into(), iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let mut out = iv.to_vec();
    out.extend_from_slice(&ct);
    hex::encode(out)
}

/// Decodes the hex (either case) into IV and ciphertext; `None` if it cannot be an envelope.
pub fn decode_hex(data: &str) -> Option<Vec<u8>> {
    let bytes = hex::decode(data.trim()).ok()?;
    // At least the IV and one block, and whole blocks only.
    (bytes.len() >= 2 * BLOCK && bytes.len() % BLOCK == 0).then_some(bytes)
}

/// Decrypts a decoded envelope under `key`; `None` when the padding is wrong (wrong key or
/// tampered data).
pub fn open(key: &[u8; 32], envelope: &[u8]) -> Option<Vec<u8>> {
    let (iv, ct) = envelope.split_at(BLOCK);
    let iv: &[u8; 16] = iv.try_into().ok()?;
    cbc::Decryptor::<Aes256>::new(key.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(ct)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_with_its_key_only() {
        let key = [7u8; 32];
        let hex = seal_hex(&key, &[1u8; 16], br#"{"refresh_token":"x"}"#);
        assert_eq!(hex, hex.to_lowercase());
        let env = decode_hex(&hex.to_uppercase()).unwrap();
        assert_eq!(open(&key, &env).unwrap(), br#"{"refresh_token":"x"}"#);
        // A wrong key almost always fails the padding check; when it does not, the bytes are
        // garbage that the JSON parser refuses.
        assert_ne!(
            open(&[8u8; 32], &env).as_deref(),
            Some(&br#"{"refresh_token":"x"}"#[..])
        );
    }

    #[test]
    fn envelopes_of_impossible_shape_are_refused_before_decryption() {
        assert!(decode_hex("zz").is_none());
        assert!(decode_hex(&"00".repeat(16)).is_none(), "IV only");
        assert!(decode_hex(&"00".repeat(40)).is_none(), "not whole blocks");
        assert!(decode_hex(&"00".repeat(32)).is_some());
    }

    #[test]
    fn tampering_with_the_last_block_breaks_the_padding() {
        let key = [9u8; 32];
        let mut env = decode_hex(&seal_hex(&key, &[2u8; 16], b"{}")).unwrap();
        let n = env.len();
        env[n - 1] ^= 0x55;
        assert!(open(&key, &env).is_none());
    }
}
