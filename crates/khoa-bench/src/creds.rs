//! The credentials each scenario presents: read from the demo's `DATA_DIR/demo.json`, or the
//! demo's fixed values (`khoa-server/src/demo.rs`, listed in the README) when none is given.
//! The bench does not depend on `khoa-server`, so the defaults are repeated here.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::Path;

/// The opaque confidential client `bench/run.sh` registers with the CLI before the run
/// (`khoa client add bench-opaque --grant-types client_credentials --token-format opaque
/// --secret-stdin`): the demo seeds none, and the bench cannot create one over HTTP.
pub const BENCH_OPAQUE_CLIENT: &str = "bench-opaque";
pub const BENCH_OPAQUE_SECRET: &str = "bench-opaque-secret-0123456789abcdef";

/// The subset of `demo.json` the scenarios use.
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    pub oauth2: OAuth2,
    pub derivative: Derivative,
    pub bankhub: Bankhub,
    pub partner: Partner,
    pub vietqr: Vietqr,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OAuth2 {
    pub path: String,
    pub client_id: String,
    pub username: String,
    pub password: String,
    pub protected_resource: String,
    /// RFC 7662 introspection; `demo.json` files written before it existed lack it.
    #[serde(default = "default_introspection_path")]
    pub introspection_path: String,
    pub confidential: ClientSecret,
}

fn default_introspection_path() -> String {
    "/connect/introspect".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClientSecret {
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Derivative {
    pub path: String,
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Bankhub {
    pub path: String,
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Partner {
    pub login_path: String,
    pub refresh_path: String,
    pub partner_code: String,
    pub key_hex: String,
    pub username: String,
    pub password: String,
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Vietqr {
    pub path: String,
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

impl Partner {
    /// The partner's AES-256 key.
    pub fn key(&self) -> Result<[u8; 32]> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(self.key_hex.trim(), &mut key)
            .context("the partner key_hex is not 64 hex characters")?;
        Ok(key)
    }
}

/// The demo's fixed credentials, as `khoa demo` writes them to `demo.json`.
impl Default for Credentials {
    fn default() -> Self {
        let s = |v: &str| v.to_owned();
        Credentials {
            oauth2: OAuth2 {
                path: s("/connect/token"),
                client_id: s("YOUR_CLIENT_ID"),
                username: s("account@tripdata.vn"),
                password: s("@Password123"),
                protected_resource: s("/api/protected-resource"),
                introspection_path: default_introspection_path(),
                confidential: ClientSecret {
                    client_id: s("demo-service"),
                    client_secret: s("demo-service-secret-0123456789abcdef"),
                },
            },
            derivative: Derivative {
                path: s("/oapi/auth/gen-secret-key/derivative"),
                username: s("022C099995"),
                password: s("123456aA@"),
            },
            bankhub: Bankhub {
                path: s("/v1/token"),
                client_id: s("bankhub-demo"),
                client_secret: s("bankhub-demo-secret-0123456789abcdef"),
            },
            partner: Partner {
                login_path: s("/openapi/v1/auth/login"),
                refresh_path: s("/openapi/v1/auth/refresh"),
                partner_code: s("YOUR_PARTNER_CODE"),
                key_hex: s("f41b33bef7f43a4c4c7d0804e435be79c58f261d52791d9095c2ff0eb0341132"),
                username: s("merchant@tconnect.vn"),
                password: s("Merchant@123"),
                client_id: s("tconnect-demo"),
                client_secret: s("tconnect-demo-secret-0123456789abcdef"),
            },
            vietqr: Vietqr {
                path: s("/vqr/api/token_generate"),
                username: s("customer-vietqrtest-user2468"),
                password: s("Y3VzdG9tZXItdmlldHFydGVzdC11c2VyMjQ2OA=="),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demo_json_reads_into_the_credentials_it_names() {
        // The shape `demo_json` in khoa-server/src/demo.rs writes, trimmed to one change.
        let json = serde_json::json!({
            "base_url": "http://127.0.0.1:1",
            "oauth2": {"path": "/connect/token", "client_id": "YOUR_CLIENT_ID",
                "username": "u", "password": "p", "scope": "a b",
                "protected_resource": "/api/protected-resource",
                "confidential": {"client_id": "svc", "client_secret": "sec"}},
            "derivative": {"path": "/d", "underlying_path": "/u", "username": "a", "password": "b"},
            "bankhub": {"path": "/v1/token", "client_id": "c", "client_secret": "s"},
            "partner": {"path": "/r", "login_path": "/l", "refresh_path": "/r",
                "partner_code": "P", "key_hex": "00".repeat(32), "username": "u",
                "password": "p", "client_id": "c", "client_secret": "s"},
            "vietqr": {"path": "/vqr/api/token_generate", "transaction_sync_path": "/t",
                "username": "u", "password": "p"},
        });
        let c: Credentials = serde_json::from_value(json).unwrap();
        assert_eq!(c.oauth2.confidential.client_id, "svc");
        assert_eq!(c.partner.key().unwrap(), [0u8; 32]);
    }

    #[test]
    fn the_default_partner_key_is_a_valid_aes_256_key() {
        assert!(Credentials::default().partner.key().is_ok());
    }
}
