//! The master key: everything khoa must store but must not store in the clear (signing keys,
//! later partner AES keys) is sealed under it with AES-256-GCM, and the client-secret pepper is
//! derived from it.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::clock::Random;

/// 32 secret bytes. `Debug` prints nothing of them; they are zeroed on drop.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyError {
    #[error("the master key must be 32 bytes written as 64 hex characters")]
    BadEncoding,
    #[error("sealed data could not be opened: wrong master key or corrupt data")]
    Open,
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(Zeroizing::new(bytes))
    }

    pub fn generate(random: &dyn Random) -> Self {
        let mut b = [0u8; 32];
        random.fill(&mut b);
        Self::from_bytes(b)
    }

    /// Parses 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Result<Self, MasterKeyError> {
        let bytes = Zeroizing::new(hex::decode(s.trim()).map_err(|_| MasterKeyError::BadEncoding)?);
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| MasterKeyError::BadEncoding)?;
        Ok(Self::from_bytes(arr))
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(*self.0))
    }

    /// A subkey for one purpose (HMAC-SHA256(master, label)), so that no two uses share a key.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&*self.0).expect("HMAC takes any key size");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.derive("khoa seal v1")).expect("32-byte key")
    }

    /// `nonce || ciphertext`, bound to `aad` (e.g. the key id) so a sealed blob cannot be moved
    /// to another row.
    pub fn seal(&self, random: &dyn Random, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        random.fill(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encryption cannot fail for these sizes");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, MasterKeyError> {
        if sealed.len() < 12 {
            return Err(MasterKeyError::Open);
        }
        let (nonce, ct) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().expect("split at 12");
        self.cipher()
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| MasterKeyError::Open)
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OsRandom;

    #[test]
    fn seal_round_trips_and_binds_aad_and_key() {
        let k = MasterKey::generate(&OsRandom);
        let sealed = k.seal(&OsRandom, b"private key bytes", b"kid-1");
        assert_eq!(&**k.open(&sealed, b"kid-1").unwrap(), b"private key bytes");
        assert_eq!(k.open(&sealed, b"kid-2"), Err(MasterKeyError::Open));
        let other = MasterKey::generate(&OsRandom);
        assert_eq!(other.open(&sealed, b"kid-1"), Err(MasterKeyError::Open));
    }

    #[test]
    fn hex_parsing_demands_exactly_32_bytes() {
        let k = MasterKey::generate(&OsRandom);
        let again = MasterKey::from_hex(&format!(" {} \n", &*k.to_hex())).unwrap();
        assert_eq!(k.derive("x"), again.derive("x"));
        assert!(MasterKey::from_hex("abcd").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
