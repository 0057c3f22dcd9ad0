//! Token material: generation, hashing at rest, constant-time checks, and the sealed successor
//! that lets a retried refresh get the same answer without the database knowing the token.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::Random;

/// 256 random bits, base64url without padding: 43 characters, the shape of seed 004's tokens.
pub fn generate_token(random: &dyn Random) -> String {
    let mut bytes = [0u8; 32];
    random.fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// How many leading bytes of a stored token carry its issue time.
const TIME_PREFIX: usize = 6;

/// A token khoa stores (opaque access and refresh tokens): 32 bytes as base64url without
/// padding, 43 characters like [`generate_token`]'s. The first 6 bytes are the issue time in
/// milliseconds (big-endian), the other 26 random: 208 bits, above the 160 that RFC 6749 §10.10
/// asks for.
///
/// Why the time: a token is stored and looked up under a key derived from it, and a random key
/// sends every insert to a page of its own in the key's index. A group commit of a few dozen
/// tokens then rewrote as many index pages into the WAL: most of the SQLite writer's time in a
/// profile of opaque `client_credentials`. With the time first ([`stored_token_key`]), keys
/// follow one another and inserts land on the last page or two.
pub fn generate_stored_token(random: &dyn Random, now_millis: i64) -> String {
    let mut bytes = [0u8; 32];
    random.fill(&mut bytes[TIME_PREFIX..]);
    let millis = u64::try_from(now_millis).unwrap_or(0).to_be_bytes();
    bytes[..TIME_PREFIX].copy_from_slice(&millis[8 - TIME_PREFIX..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The key a refresh token or an opaque access token is stored and looked up under. For a
/// token shaped like [`generate_stored_token`]'s (43 base64url characters): its time prefix in
/// hex, then its SHA-256 in hex, 76 digits that sort by issue time. The prefix is no secret
/// (it is the issue time, which the token's holder learns from `expires_in` anyway); the
/// SHA-256 is what makes the key useless to whoever reads the database. Any other token: its
/// SHA-256 alone ([`token_hash`]).
pub fn stored_token_key(token: &str) -> String {
    let hash = token_hash(token);
    match time_prefix(token) {
        Some(prefix) => {
            let mut key = hex::encode(prefix);
            key.push_str(&hash);
            key
        }
        None => hash,
    }
}

/// The key a token was stored under before keys were time-ordered, where it differs from
/// [`stored_token_key`]: its plain SHA-256. Tokens issued by an earlier khoa keep that key
/// until they expire, so a lookup that misses under the new key tries this one.
pub fn legacy_token_key(token: &str) -> Option<String> {
    time_prefix(token).map(|_| token_hash(token))
}

/// The SHA-256 (hex) inside a key from [`stored_token_key`], whichever its shape.
pub fn key_hash(key: &str) -> &str {
    key.get(key.len().saturating_sub(64)..).unwrap_or(key)
}

fn time_prefix(token: &str) -> Option<[u8; TIME_PREFIX]> {
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if token.len() != 43 || !token.bytes().all(base64url) {
        return None;
    }
    // 43 characters are 32 bytes; the first 8 of them are exactly the first 6 bytes.
    let head = &token.as_bytes()[..8];
    let mut prefix = [0u8; TIME_PREFIX];
    match URL_SAFE_NO_PAD.decode_slice(head, &mut prefix) {
        Ok(TIME_PREFIX) => Some(prefix),
        _ => None,
    }
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(random: &dyn Random, n: usize) -> String {
    let mut bytes = vec![0u8; n];
    random.fill(&mut bytes);
    hex::encode(bytes)
}

/// `n` random characters from `alphabet`, without modulo bias (rejection sampling).
fn random_from(random: &dyn Random, alphabet: &[u8], n: usize) -> String {
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        random.fill(&mut buf);
        for b in buf {
            if (b as usize) < limit && out.len() < n {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// `n` random ASCII letters and digits.
pub fn random_alnum(random: &dyn Random, n: usize) -> String {
    random_from(
        random,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        n,
    )
}

/// `n` random uppercase ASCII letters (the `KEYID` of seed 000's tokens).
pub fn random_upper(random: &dyn Random, n: usize) -> String {
    random_from(random, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", n)
}

/// The at-rest form of a refresh token or an opaque access token: lowercase hex SHA-256. A
/// plain hash suffices because the tokens carry 256 bits of entropy; there is nothing to
/// brute-force.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time equality of two secrets (lengths may leak; contents do not).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Hashes client secrets with HMAC-SHA256 under a key derived from the master key.
///
/// Why not Argon2 as for passwords: client secrets are generated by khoa with 256 bits of
/// entropy (operator-chosen ones must be at least 32 characters), so a slow hash buys nothing
/// against brute force, while `client_credentials` would pay tens of milliseconds per call.
/// The key (a "pepper") means a stolen database alone cannot even test guesses offline.
#[derive(Clone)]
pub struct SecretHasher {
    key: [u8; 32],
}

const SECRET_HASH_PREFIX: &str = "hmac-sha256$";

impl SecretHasher {
    pub fn new(key: [u8; 32]) -> Self {
        SecretHasher { key }
    }

    fn mac(&self, secret: &str) -> Vec<u8> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    pub fn hash(&self, secret: &str) -> String {
        format!("{SECRET_HASH_PREFIX}{}", hex::encode(self.mac(secret)))
    }

    /// Constant-time check of `secret` against a stored hash. With `stored` absent (unknown
    /// client) the MAC is still computed so that the answer takes the same time.
    pub fn verify(&self, secret: &str, stored: Option<&str>) -> bool {
        let computed = self.mac(secret);
        let Some(expected) = stored
            .and_then(|s| s.strip_prefix(SECRET_HASH_PREFIX))
            .and_then(|h| hex::decode(h).ok())
        else {
            return false;
        };
        ct_eq(&computed, &expected)
    }
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHasher(..)")
    }
}

fn successor_key(redeemed: &str) -> Aes256Gcm {
    let mut h = Sha256::new();
    h.update(b"khoa successor seal v1\0");
    h.update(redeemed.as_bytes());
    Aes256Gcm::new_from_slice(&h.finalize()).expect("32-byte key")
}

/// Encrypts the successor refresh token under a key derived from the token it replaces.
///
/// Only a caller who presents the redeemed token can open it, so storing it does not put a
/// usable token in the database, yet a retry inside the reuse window can be answered with the
/// very successor the first response carried (DESIGN.md, refresh rotation guarantee).
pub fn seal_successor(random: &dyn Random, redeemed: &str, successor: &str) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    random.fill(&mut nonce);
    let mut out = nonce.to_vec();
    let ct = successor_key(redeemed)
        .encrypt(&Nonce::from(nonce), successor.as_bytes())
        .expect("AES-GCM encryption of a short message cannot fail");
    out.extend_from_slice(&ct);
    out
}

/// Opens what [`seal_successor`] sealed; `None` if `redeemed` is not the token it was sealed for.
pub fn open_successor(redeemed: &str, sealed: &[u8]) -> Option<String> {
    if sealed.len() < 12 {
        return None;
    }
    let (nonce, ct) = sealed.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().expect("split at 12");
    let pt = successor_key(redeemed)
        .decrypt(&Nonce::from(nonce), ct)
        .ok()?;
    String::from_utf8(pt).ok()
}

/// First characters of a token, for `Debug` impls and logs that must not carry the secret.
pub fn redacted(token: &str) -> String {
    let prefix: String = token.chars().take(4).collect();
    format!("{prefix}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OsRandom;

    #[test]
    fn tokens_are_43_url_safe_characters_and_unique() {
        let a = generate_token(&OsRandom);
        let b = generate_token(&OsRandom);
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
    }

    #[test]
    fn stored_tokens_carry_their_time_and_their_keys_sort_by_it() {
        let earlier = generate_stored_token(&OsRandom, 1_795_000_000_123);
        let later = generate_stored_token(&OsRandom, 1_795_000_000_124);
        let again = generate_stored_token(&OsRandom, 1_795_000_000_124);
        for token in [&earlier, &later] {
            assert_eq!(token.len(), 43);
            assert!(
                token
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            );
        }
        assert_ne!(later, again, "the rest is random");
        let (k1, k2) = (stored_token_key(&earlier), stored_token_key(&later));
        assert!(k1 < k2, "keys follow the issue time");
        assert_eq!(&k1[..12], format!("{:012x}", 1_795_000_000_123_u64));
        assert_eq!(k1.len(), 76);
        assert_eq!(key_hash(&k1), token_hash(&earlier));
        assert!(
            !k1.contains(&earlier[8..]),
            "nothing of the random part in clear"
        );
    }

    #[test]
    fn other_tokens_are_keyed_by_their_hash_and_only_stored_shapes_have_a_legacy_key() {
        let hex40 = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(stored_token_key(hex40), token_hash(hex40));
        assert_eq!(legacy_token_key(hex40), None);
        assert_eq!(key_hash(&stored_token_key(hex40)), token_hash(hex40));
        // A 43-character token minted before keys were time-ordered: looked up under the new
        // key first (a miss), then under the key it was stored with.
        let old = generate_token(&OsRandom);
        assert_eq!(legacy_token_key(&old), Some(token_hash(&old)));
        // Not base64url at the start, or multi-byte: plain hash, no panic.
        let account = "022C099995||ABCDEFGHIJ||abcdefghijklmnopqrs";
        assert_eq!(account.len(), 43);
        for odd in [
            "!".repeat(43),
            "é".repeat(21) + "x",
            "short".into(),
            account.into(),
        ] {
            assert_eq!(stored_token_key(&odd), token_hash(&odd));
            assert_eq!(legacy_token_key(&odd), None);
        }
    }

    #[test]
    fn token_hash_is_hex_sha256_and_not_the_token() {
        let h = token_hash("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secret_hasher_accepts_only_the_right_secret_and_key() {
        let hasher = SecretHasher::new([7; 32]);
        let stored = hasher.hash("s3cret-value");
        assert!(!stored.contains("s3cret"));
        assert!(hasher.verify("s3cret-value", Some(&stored)));
        assert!(!hasher.verify("s3cret-valuf", Some(&stored)));
        assert!(!hasher.verify("s3cret-value", None));
        assert!(!SecretHasher::new([8; 32]).verify("s3cret-value", Some(&stored)));
    }

    #[test]
    fn successor_opens_only_with_the_redeemed_token() {
        let sealed = seal_successor(&OsRandom, "old-token", "new-token");
        assert!(!sealed.windows(9).any(|w| w == b"new-token"));
        assert_eq!(
            open_successor("old-token", &sealed).as_deref(),
            Some("new-token")
        );
        assert_eq!(open_successor("other-token", &sealed), None);
        assert_eq!(open_successor("old-token", &sealed[..5]), None);
    }
}
