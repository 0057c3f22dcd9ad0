//! Shared set-up of the fuzz targets: deterministic randomness, so that a signing key, an
//! engine and the tokens it issues are the same in every run — the seeds written by
//! `cargo run --bin seeds` then verify in the targets, and the fuzzer mutates from real tokens.

use khoa_core::clock::{ManualClock, Random};
use khoa_core::engine::{Engine, EngineConfig};
use khoa_core::grant::{ClientAuth, TokenRequest};
use khoa_core::keys::{KeyRing, generate_key};
use khoa_core::master_key::MasterKey;
use khoa_core::model::{AccessTokenFormat, Client, GrantType, TokenPolicy};
use khoa_core::password::PasswordParams;
use khoa_core::scope::ScopeSet;
use khoa_core::store::LockoutPolicy;
use khoa_core::testing::MemoryStore;
use khoa_dialect::def::ClientAuth as AuthFrom;
use khoa_dialect::load::Endpoint;
use khoa_server::config::DialectsConfig;
use khoa_server::dialects::registry;
use secrecy::SecretString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

pub const ISSUER: &str = "https://khoa.fuzz.test";
pub const AUDIENCE: &str = "https://api.fuzz.test";
/// The fixed "now" of every target.
pub const NOW: i64 = 1_750_000_000;
/// The partner AES key of the envelope target.
pub const ENVELOPE_KEY: [u8; 32] = *b"khoa-fuzz-envelope-key-32-bytes!";
const SECRET: &str = "khoa-fuzz-client-secret-0123456789abcdef";

/// Not random at all: splitmix64 from a fixed seed. Only for fuzzing.
pub struct FixedRandom(AtomicU64);

impl FixedRandom {
    pub fn new() -> Self {
        FixedRandom(AtomicU64::new(0x6b68_6f61))
    }
}

impl Default for FixedRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl Random for FixedRandom {
    fn fill(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut z = self.0.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

fn master() -> MasterKey {
    MasterKey::from_bytes([0x42; 32])
}

/// A key ring with one Ed25519 key, active since before [`NOW`].
pub fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let master = master();
        let record = generate_key(&FixedRandom::new(), &master, NOW - 60, NOW - 60);
        KeyRing::load(&[record], &master, NOW).expect("the fuzz ring loads")
    })
}

/// Every endpoint of the built-in dialects that takes its client from `Authorization: Basic`
/// alone (`client_auth = "basic"` or `"basic_form"`: bank-hub, VietQR), as the registry loads
/// them: a built-in definition added later is fuzzed without a change here.
pub fn basic_endpoints() -> &'static [Endpoint] {
    static ENDPOINTS: OnceLock<Vec<Endpoint>> = OnceLock::new();
    ENDPOINTS.get_or_init(|| {
        let endpoints: Vec<Endpoint> = registry::built_ins(&DialectsConfig::default())
            .expect("the built-in dialects load")
            .into_iter()
            .flat_map(|(dialect, _)| dialect.endpoints.clone())
            .filter(|e| matches!(e.client_auth, AuthFrom::Basic | AuthFrom::BasicForm))
            .collect();
        assert!(!endpoints.is_empty(), "no built-in dialect reads Basic");
        endpoints
    })
}

/// An in-memory engine and the access tokens it issued, one per format (JWT, opaque, hex40,
/// account), on a single-threaded runtime that the targets drive it with.
pub struct Fixture {
    pub runtime: tokio::runtime::Runtime,
    pub engine: Engine,
    pub tokens: Vec<String>,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (engine, tokens) = runtime.block_on(build_engine());
        Fixture {
            runtime,
            engine,
            tokens,
        }
    })
}

async fn build_engine() -> (Engine, Vec<String>) {
    let config = EngineConfig {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        password: PasswordParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        password_concurrency: 1,
        password_queue: 1,
        client_cache_secs: 5,
        auth_code_ttl: 60,
        // No lockout: nothing here logs in with a password.
        lockout: LockoutPolicy {
            threshold: 0,
            base_secs: 0,
            max_secs: 0,
        },
        node: None,
        operator: None,
    };
    let engine = Engine::new(
        config,
        MemoryStore::stores(),
        master(),
        Arc::new(ManualClock::new(NOW)),
        Arc::new(FixedRandom::new()),
    )
    .await
    .expect("the fuzz engine starts");
    let formats = [
        ("jwt", AccessTokenFormat::Jwt),
        ("opaque", AccessTokenFormat::Opaque),
        ("hex40", AccessTokenFormat::Hex40),
        ("account", AccessTokenFormat::Account),
    ];
    let mut tokens = Vec::new();
    for (id, format) in formats {
        let scopes = ScopeSet::parse("read write").expect("scopes");
        let client = Client {
            client_id: id.to_owned(),
            name: id.to_owned(),
            secret_hash: None,
            allowed_scopes: scopes.clone(),
            default_scopes: scopes,
            grant_types: vec![GrantType::ClientCredentials],
            redirect_uris: Vec::new(),
            policy: TokenPolicy {
                access_format: format,
                ..TokenPolicy::default()
            },
            disabled: false,
            created_at: NOW,
        };
        engine
            .admin()
            .create_client(client, true, Some(SecretString::from(SECRET)))
            .await
            .expect("the fuzz client is created");
        let request = TokenRequest::new(
            "client_credentials",
            ClientAuth::Basic {
                client_id: id.to_owned(),
                secret: SecretString::from(SECRET),
            },
        );
        let issued = engine
            .tokens()
            .token(&request)
            .await
            .expect("a token is issued");
        tokens.push(issued.access_token);
    }
    (engine, tokens)
}
