//! The keys clients sign their requests with (`khoa client key`), for the signature dialects:
//! RSA public keys, stored as they are, and HMAC shared secrets, sealed under the master key
//! the way partner keys are ([`crate::partner`]) and opened only to verify a request.

use std::sync::Arc;
use zeroize::Zeroizing;

use crate::clock::{Clock, Random};
use crate::error::{EngineError, OAuthError};
use crate::master_key::MasterKey;
use crate::model::UnixTime;
use crate::secret::random_hex;
use crate::store::{ClientKey, ClientKeyStore, ClientStore};

/// What a client key is, stored as [`KeyAlg::as_str`] in [`ClientKey::alg`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlg {
    /// An RSA public key (DER SPKI), for RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// A shared secret. One secret serves HMAC-SHA256 and HMAC-SHA512 alike: the dialect's
    /// signature kind picks the hash, so the key names no hash of its own.
    Hmac,
}

impl KeyAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::Rs256 => "RS256",
            KeyAlg::Hmac => "HMAC",
        }
    }
}

/// RFC 2104 §3: a key shorter than the hash's output "is strongly discouraged"; 32 bytes is
/// SHA-256's, and the floor khoa sets for operator-supplied client secrets as well.
pub const MIN_HMAC_SECRET_LEN: usize = 32;

#[derive(Clone)]
pub struct ClientKeys {
    pub(crate) store: Arc<dyn ClientKeyStore>,
    pub(crate) clients: Arc<dyn ClientStore>,
    pub(crate) master: MasterKey,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn Random>,
}

/// Binds a sealed secret to its row, so that it cannot be moved to another client or kid.
fn aad(client_id: &str, kid: &str) -> Vec<u8> {
    format!("client_key:{client_id}:{kid}").into_bytes()
}

impl ClientKeys {
    /// Registers an RSA public key (DER SPKI) of an existing client and returns its kid, by
    /// default 16 hex digits of the key's SHA-256.
    pub async fn add_public_key(
        &self,
        client_id: &str,
        kid: Option<String>,
        spki_der: Vec<u8>,
    ) -> Result<String, EngineError> {
        let kid = kid.unwrap_or_else(|| {
            use sha2::Digest as _;
            hex::encode(&sha2::Sha256::digest(&spki_der)[..8])
        });
        self.add(client_id, kid, KeyAlg::Rs256, spki_der).await
    }

    /// Registers a shared secret of an existing client, sealed under the master key, and
    /// returns its kid, by default 16 random hex digits (never derived from the secret).
    pub async fn add_hmac_secret(
        &self,
        client_id: &str,
        kid: Option<String>,
        secret: &[u8],
    ) -> Result<String, EngineError> {
        if secret.len() < MIN_HMAC_SECRET_LEN {
            return Err(OAuthError::invalid_request(format!(
                "the HMAC secret has {} bytes; at least {MIN_HMAC_SECRET_LEN} are needed \
                 (RFC 2104 §3)",
                secret.len()
            ))
            .into());
        }
        let kid = kid.unwrap_or_else(|| random_hex(&*self.random, 8));
        let sealed = self
            .master
            .seal(&*self.random, secret, &aad(client_id, &kid));
        self.add(client_id, kid, KeyAlg::Hmac, sealed).await
    }

    async fn add(
        &self,
        client_id: &str,
        kid: String,
        alg: KeyAlg,
        material: Vec<u8>,
    ) -> Result<String, EngineError> {
        if self.clients.find_client(client_id).await?.is_none() {
            return Err(OAuthError::invalid_request(format!("no client {client_id}")).into());
        }
        self.store
            .add_client_key(&ClientKey {
                client_id: client_id.to_owned(),
                kid: kid.clone(),
                alg: alg.as_str().into(),
                material,
                created_at: self.clock.now(),
            })
            .await?;
        Ok(kid)
    }

    /// What verifies a signature of `client_id` with keys of `alg`, newest first: the public
    /// keys as stored, the secrets opened. A secret that does not open (another master key,
    /// a corrupt row) is logged by kid and skipped.
    pub async fn verifying(
        &self,
        client_id: &str,
        alg: KeyAlg,
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, EngineError> {
        let keys = self.store.client_keys(client_id).await?;
        let mut out = Vec::new();
        for k in keys.into_iter().filter(|k| k.alg == alg.as_str()) {
            match alg {
                KeyAlg::Rs256 => out.push(Zeroizing::new(k.material)),
                KeyAlg::Hmac => match self.master.open(&k.material, &aad(client_id, &k.kid)) {
                    Ok(secret) => out.push(secret),
                    Err(_) => {
                        tracing::error!(client = client_id, kid = %k.kid, "client HMAC secret does not unseal");
                    }
                },
            }
        }
        Ok(out)
    }

    /// The keys of `client_id`, newest first, material left sealed.
    pub async fn list(&self, client_id: &str) -> Result<Vec<ClientKey>, EngineError> {
        Ok(self.store.client_keys(client_id).await?)
    }

    /// Removes one key; `false` when `client_id` has no key `kid`.
    pub async fn remove(&self, client_id: &str, kid: &str) -> Result<bool, EngineError> {
        Ok(self.store.delete_client_key(client_id, kid).await?)
    }

    /// Removes every key of `client_id` (the client is going: a client made later under the
    /// same id must not inherit them).
    pub async fn remove_all(&self, client_id: &str) -> Result<(), EngineError> {
        for k in self.store.client_keys(client_id).await? {
            self.store.delete_client_key(client_id, &k.kid).await?;
        }
        Ok(())
    }

    /// Records a verified signature (named by its digest) as used until `until`; `false` when
    /// it already was: a replay.
    pub async fn use_signature(
        &self,
        digest: &str,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<bool, EngineError> {
        Ok(self.store.use_signature(digest, until, now).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{OsRandom, SystemClock};
    use crate::model::{Client, GrantType, TokenPolicy};
    use crate::scope::ScopeSet;
    use crate::store::Stores;
    use crate::testing::MemoryStore;

    async fn keys() -> (ClientKeys, Stores) {
        let stores = MemoryStore::stores();
        stores
            .clients
            .create_client(&Client {
                client_id: "c1".into(),
                name: "c1".into(),
                secret_hash: None,
                allowed_scopes: ScopeSet::default(),
                default_scopes: ScopeSet::default(),
                grant_types: vec![GrantType::ClientCredentials],
                redirect_uris: Vec::new(),
                policy: TokenPolicy::default(),
                disabled: false,
                created_at: 0,
            })
            .await
            .unwrap();
        let keys = ClientKeys {
            store: stores.client_keys.clone(),
            clients: stores.clients.clone(),
            master: MasterKey::generate(&OsRandom),
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
        };
        (keys, stores)
    }

    #[tokio::test]
    async fn an_hmac_secret_is_sealed_at_rest_and_opens_for_its_row_only() {
        let (keys, stores) = keys().await;
        let secret = b"0123456789abcdef0123456789abcdef-shared";
        let kid = keys
            .add_hmac_secret("c1", Some("h1".into()), secret)
            .await
            .unwrap();
        assert_eq!(kid, "h1");
        let stored = stores.client_keys.client_keys("c1").await.unwrap();
        assert_eq!(stored[0].alg, "HMAC");
        assert!(
            !stored[0]
                .material
                .windows(secret.len())
                .any(|w| w == secret),
            "the secret is stored sealed"
        );
        let opened = keys.verifying("c1", KeyAlg::Hmac).await.unwrap();
        assert_eq!(opened.len(), 1);
        assert_eq!(&opened[0][..], secret);
        assert!(
            keys.verifying("c1", KeyAlg::Rs256)
                .await
                .unwrap()
                .is_empty()
        );

        // The same sealed bytes under another kid do not open.
        let mut moved = stored[0].clone();
        moved.kid = "h2".into();
        stores.client_keys.add_client_key(&moved).await.unwrap();
        assert_eq!(keys.verifying("c1", KeyAlg::Hmac).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn short_secrets_and_unknown_clients_are_refused() {
        let (keys, _stores) = keys().await;
        let e = keys
            .add_hmac_secret("c1", None, b"too short")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("at least 32"), "{e}");
        let e = keys
            .add_hmac_secret("nosuch", None, &[7; 32])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no client nosuch"), "{e}");
        let kid = keys.add_hmac_secret("c1", None, &[7; 32]).await.unwrap();
        assert_eq!(kid.len(), 16);
    }
}
