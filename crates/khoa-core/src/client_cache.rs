//! A short-lived cache of client records.
//!
//! Every token request reads its client, and clients change rarely: caching them for a few
//! seconds takes a database round trip off the hot path of `client_credentials` (the
//! benchmark's fastest grant). Changes made through this engine are seen at once (it drops its
//! own entry); changes by another process — the CLI, another node — within `ttl` seconds.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::model::{Client, UnixTime};
use crate::store::{ClientStore, StoreError};

/// More distinct clients than this and the cache starts over, so that a flood of made-up
/// client ids cannot grow it without bound (misses are never cached anyway).
const MAX_ENTRIES: usize = 10_000;

pub struct ClientCache {
    store: Arc<dyn ClientStore>,
    ttl: i64,
    entries: RwLock<HashMap<String, (Client, UnixTime)>>,
}

impl ClientCache {
    /// `ttl` 0 disables caching.
    pub fn new(store: Arc<dyn ClientStore>, ttl: i64) -> Self {
        ClientCache {
            store,
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    pub async fn find(&self, client_id: &str, now: UnixTime) -> Result<Option<Client>, StoreError> {
        if self.ttl > 0 {
            let entries = self.entries.read().expect("client cache poisoned");
            if let Some((c, until)) = entries.get(client_id)
                && *until > now
            {
                return Ok(Some(c.clone()));
            }
        }
        let found = self.store.find_client(client_id).await?;
        if self.ttl > 0
            && let Some(c) = &found
        {
            let mut entries = self.entries.write().expect("client cache poisoned");
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(client_id.to_owned(), (c.clone(), now + self.ttl));
        }
        Ok(found)
    }

    /// Reads the client from the store whatever the cache holds, and caches that. Used when a
    /// cached copy refused a credential: the client may have been changed elsewhere (a rotated
    /// secret must work at once, not after `ttl`).
    pub async fn refresh(
        &self,
        client_id: &str,
        now: UnixTime,
    ) -> Result<Option<Client>, StoreError> {
        self.invalidate(client_id);
        self.find(client_id, now).await
    }

    pub fn invalidate(&self, client_id: &str) {
        self.entries
            .write()
            .expect("client cache poisoned")
            .remove(client_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GrantType, TokenPolicy};
    use crate::testing::MemoryStore;

    fn client(id: &str, name: &str) -> Client {
        Client {
            client_id: id.into(),
            name: name.into(),
            secret_hash: None,
            allowed_scopes: Default::default(),
            default_scopes: Default::default(),
            grant_types: vec![GrantType::ClientCredentials],
            redirect_uris: Vec::new(),
            policy: TokenPolicy::default(),
            disabled: false,
            created_at: 0,
        }
    }

    #[tokio::test]
    async fn entries_live_for_ttl_and_invalidation_drops_them() {
        let stores = MemoryStore::stores();
        stores
            .clients
            .create_client(&client("a", "v1"))
            .await
            .unwrap();
        let cache = ClientCache::new(stores.clients.clone(), 5);
        assert_eq!(cache.find("a", 100).await.unwrap().unwrap().name, "v1");

        // Changed behind the cache's back (another process): still the cached copy…
        stores.clients.delete_client("a").await.unwrap();
        stores
            .clients
            .create_client(&client("a", "v2"))
            .await
            .unwrap();
        assert_eq!(cache.find("a", 104).await.unwrap().unwrap().name, "v1");
        // …until the entry expires,
        assert_eq!(cache.find("a", 105).await.unwrap().unwrap().name, "v2");
        // or is dropped by whoever changed it through this engine.
        stores.clients.delete_client("a").await.unwrap();
        cache.invalidate("a");
        assert!(cache.find("a", 105).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn ttl_zero_always_reads_the_store() {
        let stores = MemoryStore::stores();
        stores
            .clients
            .create_client(&client("a", "v1"))
            .await
            .unwrap();
        let cache = ClientCache::new(stores.clients.clone(), 0);
        cache.find("a", 1).await.unwrap();
        stores.clients.delete_client("a").await.unwrap();
        assert!(cache.find("a", 1).await.unwrap().is_none());
    }
}
