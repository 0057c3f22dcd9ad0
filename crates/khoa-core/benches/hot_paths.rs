//! Criterion micro-benchmarks of the engine's hot paths: minting and verifying a JWT, checking
//! a client secret, hashing a token, and one refresh-token rotation decision.
//!
//! `cargo bench -p khoa-core`. These measure the core alone; `bench/run.sh` measures the
//! server end to end.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use khoa_core::clock::{ManualClock, OsRandom};
use khoa_core::engine::{Engine, EngineConfig};
use khoa_core::grant::{ClientAuth, TokenRequest};
use khoa_core::keys::{ACCESS_TOKEN_TYP, AccessTokenClaims, KeyRing, generate_key};
use khoa_core::master_key::MasterKey;
use khoa_core::model::{Client, GrantType, RefreshIssuance, TokenPolicy};
use khoa_core::password::PasswordParams;
use khoa_core::scope::ScopeSet;
use khoa_core::secret::{SecretHasher, token_hash};
use khoa_core::testing::MemoryStore;
use secrecy::SecretString;
use std::hint::black_box;
use std::sync::Arc;

fn claims() -> AccessTokenClaims {
    AccessTokenClaims {
        iss: "https://khoa.example".into(),
        sub: "usr_0123456789abcdef01234567".into(),
        aud: "khoa".into(),
        exp: 2_000_000_000,
        iat: 1_700_000_000,
        jti: "0123456789abcdef0123456789abcdef".into(),
        client_id: "demo-service".into(),
        scope: "config-data hub-data".into(),
        sid: None,
        otp_sha256: None,
    }
}

fn jwt(c: &mut Criterion) {
    let master = MasterKey::generate(&OsRandom);
    let ring = KeyRing::load(&[generate_key(&OsRandom, &master, 1, 1)], &master, 2).unwrap();
    let claims = claims();
    c.bench_function("jwt/mint", |b| {
        b.iter(|| ring.sign(ACCESS_TOKEN_TYP, black_box(&claims), 2).unwrap())
    });
    let token = ring.sign(ACCESS_TOKEN_TYP, &claims, 2).unwrap();
    c.bench_function("jwt/verify_first_sight", |b| {
        b.iter(|| ring.verify_signature(black_box(&token), 2).unwrap())
    });
    c.bench_function("jwt/verify_seen_before", |b| {
        b.iter(|| {
            ring.verify(black_box(&token), "https://khoa.example", "khoa", 2)
                .unwrap()
        })
    });
}

fn secrets(c: &mut Criterion) {
    let hasher = SecretHasher::new([7; 32]);
    let secret = "demo-service-secret-0123456789abcdef";
    let stored = hasher.hash(secret);
    c.bench_function("client_secret/verify", |b| {
        b.iter(|| assert!(hasher.verify(black_box(secret), Some(&stored))))
    });
    let token = "TBMIzG5X_-fhx_3IlxHNjoiPu9T8u6hl5L2v1Cfbwps";
    c.bench_function("token/hash", |b| b.iter(|| token_hash(black_box(token))));
}

/// One rotation decision: look up the presented refresh token, decide, mint the successor and
/// an access token, and commit (to the in-memory store, so the figure is the engine's own).
fn rotation(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = rt.block_on(async {
        let engine = Engine::new(
            EngineConfig {
                issuer: "https://khoa.example".into(),
                audience: "khoa".into(),
                password: PasswordParams {
                    memory_kib: 64,
                    iterations: 1,
                    parallelism: 1,
                },
                password_concurrency: 1,
                password_queue: 1,
                client_cache_secs: 5,
                auth_code_ttl: 60,
                lockout: khoa_core::store::LockoutPolicy {
                    threshold: 0,
                    base_secs: 60,
                    max_secs: 3600,
                },
                node: None,
                operator: None,
            },
            MemoryStore::stores(),
            MasterKey::generate(&OsRandom),
            Arc::new(ManualClock::new(1_700_000_000)),
            Arc::new(OsRandom),
        )
        .await
        .unwrap();
        let scope = ScopeSet::parse("read offline_access").unwrap();
        let client = Client {
            client_id: "app".into(),
            name: "app".into(),
            secret_hash: None,
            allowed_scopes: scope.clone(),
            default_scopes: scope.clone(),
            grant_types: vec![GrantType::Password, GrantType::RefreshToken],
            redirect_uris: Vec::new(),
            policy: TokenPolicy {
                refresh: RefreshIssuance::Always,
                ..TokenPolicy::default()
            },
            disabled: false,
            created_at: 0,
        };
        engine
            .admin()
            .create_client(client, false, None)
            .await
            .unwrap();
        engine
            .admin()
            .create_user("alice", &SecretString::from("pw"), None)
            .await
            .unwrap();
        engine
    });
    let login = TokenRequest {
        username: Some("alice".into()),
        password: Some(SecretString::from("pw")),
        ..TokenRequest::new(
            "password",
            ClientAuth::IdOnly {
                client_id: "app".into(),
            },
        )
    };
    let first = rt.block_on(engine.tokens().token(&login)).unwrap();
    let current = std::cell::RefCell::new(first.refresh_token.unwrap());
    c.bench_function("refresh/rotate", |b| {
        b.iter_batched(
            || TokenRequest {
                refresh_token: Some(SecretString::from(current.borrow().clone())),
                ..TokenRequest::new(
                    "refresh_token",
                    ClientAuth::IdOnly {
                        client_id: "app".into(),
                    },
                )
            },
            |request| {
                let issued = rt.block_on(engine.tokens().token(&request)).unwrap();
                *current.borrow_mut() = issued.refresh_token.unwrap();
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(hot_paths, jwt, secrets, rotation);
criterion_main!(hot_paths);
