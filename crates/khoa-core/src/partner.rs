//! Partners of the encrypted dialect (seed 002): their AES keys, sealed at rest, rotated with
//! an overlap, and the opening of their envelopes.

use std::sync::Arc;
use zeroize::Zeroizing;

use crate::clock::{Clock, Random};
use crate::envelope;
use crate::error::{EngineError, OAuthError};
use crate::master_key::MasterKey;
use crate::model::UnixTime;
use crate::secret::random_hex;
use crate::store::{ClientStore, Partner, PartnerKey, PartnerStore, StoreError};

/// Why an envelope was refused. `Undecryptable` covers every cryptographic failure alike, so
/// that callers cannot tell a bad padding from a wrong key (no padding oracle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    UnknownPartner,
    Undecryptable,
    Unavailable(String),
}

/// A successfully opened envelope.
#[derive(Debug)]
pub struct Opened {
    pub partner: Partner,
    pub plaintext: Zeroizing<Vec<u8>>,
}

#[derive(Clone)]
pub struct Partners {
    pub(crate) store: Arc<dyn PartnerStore>,
    pub(crate) clients: Arc<dyn ClientStore>,
    pub(crate) master: MasterKey,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn Random>,
}

fn aad(code: &str, key_id: &str) -> Vec<u8> {
    format!("partner:{code}:{key_id}").into_bytes()
}

impl Partners {
    fn new_key(
        &self,
        code: &str,
        given: Option<[u8; 32]>,
        now: UnixTime,
    ) -> (PartnerKey, Zeroizing<String>) {
        let mut raw = Zeroizing::new(given.unwrap_or_default());
        if given.is_none() {
            self.random.fill(&mut raw[..]);
        }
        let key_id = format!("pk_{}", random_hex(&*self.random, 8));
        let sealed = self
            .master
            .seal(&*self.random, &raw[..], &aad(code, &key_id));
        let key = PartnerKey {
            key_id,
            sealed,
            created_at: now,
            expires_at: None,
        };
        (key, Zeroizing::new(hex::encode(&raw[..])))
    }

    /// Registers a partner bound to `client_id` and returns its first key as hex: the only
    /// time the key exists in the clear outside an envelope. The key is generated unless
    /// `key` is given (the demo's fixed, published key).
    pub async fn create(
        &self,
        code: &str,
        name: &str,
        client_id: &str,
        key: Option<[u8; 32]>,
    ) -> Result<Zeroizing<String>, EngineError> {
        if code.is_empty() || !code.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(OAuthError::invalid_request(
                "a partner code is printable ASCII without spaces",
            )
            .into());
        }
        if self.clients.find_client(client_id).await?.is_none() {
            return Err(OAuthError::invalid_request(format!("no client {client_id}")).into());
        }
        let now = self.clock.now();
        let (key, hex) = self.new_key(code, key, now);
        self.store
            .create_partner(&Partner {
                code: code.to_owned(),
                name: name.to_owned(),
                client_id: client_id.to_owned(),
                created_at: now,
                keys: vec![key],
            })
            .await?;
        Ok(hex)
    }

    /// Makes a fresh key current; the previous ones keep opening envelopes for `overlap` more
    /// seconds. Returns the new key as hex, or `None` for an unknown partner.
    pub async fn rotate_key(
        &self,
        code: &str,
        overlap: i64,
    ) -> Result<Option<Zeroizing<String>>, EngineError> {
        let now = self.clock.now();
        let (key, hex) = self.new_key(code, None, now);
        let found = self
            .store
            .add_partner_key(code, &key, now + overlap.max(0))
            .await?;
        Ok(found.then_some(hex))
    }

    pub async fn list(&self) -> Result<Vec<Partner>, EngineError> {
        Ok(self.store.list_partners().await?)
    }

    pub async fn remove(&self, code: &str) -> Result<bool, EngineError> {
        Ok(self.store.delete_partner(code).await?)
    }

    /// Opens `data_hex` with each live key of the partner, newest first.
    pub async fn open(&self, code: &str, data_hex: &str) -> Result<Opened, EnvelopeError> {
        let partner = self
            .store
            .find_partner(code)
            .await
            .map_err(|e: StoreError| EnvelopeError::Unavailable(e.to_string()))?;
        let data = envelope::decode_hex(data_hex);
        let Some(partner) = partner else {
            // Do the work a known partner costs, so that timing does not reveal which codes
            // exist.
            if let Some(d) = &data {
                let _ = envelope::open(&[0u8; 32], d);
            }
            return Err(EnvelopeError::UnknownPartner);
        };
        let data = data.ok_or(EnvelopeError::Undecryptable)?;
        let now = self.clock.now();
        let mut opened = None;
        // Every live key is tried even after a success, so that the time taken does not say
        // which key (or whether any) matched.
        for k in partner
            .keys
            .iter()
            .filter(|k| k.expires_at.is_none_or(|t| t > now))
        {
            let Ok(raw) = self.master.open(&k.sealed, &aad(code, &k.key_id)) else {
                tracing::error!(partner = code, key = %k.key_id, "partner key does not unseal");
                continue;
            };
            let Ok(raw): Result<[u8; 32], _> = raw.as_slice().try_into() else {
                continue;
            };
            let key = Zeroizing::new(raw);
            if let Some(pt) = envelope::open(&key, &data)
                && opened.is_none()
            {
                opened = Some(Zeroizing::new(pt));
            }
        }
        let plaintext = opened.ok_or(EnvelopeError::Undecryptable)?;
        Ok(Opened { partner, plaintext })
    }
}
