//! Unit tests of [`Engine`] over the in-memory store: grants, scope rules, client
//! authentication, bearer validation, refresh rotation and reuse, key rotation, administration.
//!
//! Time is a [`ManualClock`] the tests advance; nothing sleeps. Argon2 runs with a cheap cost
//! set explicitly in [`config`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use std::sync::Arc;

use crate::clock::{Clock, ManualClock, OsRandom};
use crate::engine::{BearerError, Engine, EngineConfig, MIN_CLIENT_SECRET_LEN, Principal};
use crate::error::{EngineError, ErrorCode, OAuthError};
use crate::grant::{ClientAuth, TokenRequest};
use crate::master_key::MasterKey;
use crate::mint::{IssuedTokens, KeyRotation, RotationOutcome};
use crate::model::{
    AccessTokenFormat, Client, GrantType, RefreshIssuance, TokenPolicy, UnixTime, User,
};
use crate::password::PasswordParams;
use crate::scope::ScopeSet;
use crate::secret::{generate_token, stored_token_key, token_hash};
use crate::store::{AccessRecord, Family, Issuance, RefreshRecord, Stores};
use crate::testing::MemoryStore;

const START: UnixTime = 1_700_000_000;
const ISSUER: &str = "https://khoa.test";
const AUDIENCE: &str = "https://api.khoa.test";
const PASSWORD: &str = "@Password123";
const CLIENT_SECRET: &str = "an-operator-chosen-secret-of-40-characters";

fn config() -> EngineConfig {
    EngineConfig {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        // Tests lower the Argon2 cost only here, explicitly.
        password: PasswordParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        password_concurrency: 2,
        password_queue: 64,
        client_cache_secs: 5,
        auth_code_ttl: 60,
        lockout: crate::store::LockoutPolicy {
            threshold: 5,
            base_secs: 60,
            max_secs: 3600,
        },
        node: None,
        operator: None,
    }
}

fn scopes(s: &str) -> ScopeSet {
    ScopeSet::parse(s).expect("test scopes are well-formed")
}

/// A client allowed every grant, with the default policy; tests override what they need.
fn client(client_id: &str) -> Client {
    Client {
        client_id: client_id.to_owned(),
        name: format!("test client {client_id}"),
        secret_hash: None,
        allowed_scopes: scopes("admin offline_access read write"),
        default_scopes: scopes("read write"),
        grant_types: GrantType::ALL.to_vec(),
        redirect_uris: Vec::new(),
        policy: TokenPolicy::default(),
        disabled: false,
        created_at: 0,
    }
}

fn with_policy(client_id: &str, policy: TokenPolicy) -> Client {
    Client {
        policy,
        ..client(client_id)
    }
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s)
}

fn id_only(client_id: &str) -> ClientAuth {
    ClientAuth::IdOnly {
        client_id: client_id.to_owned(),
    }
}

fn basic(client_id: &str, s: &str) -> ClientAuth {
    ClientAuth::Basic {
        client_id: client_id.to_owned(),
        secret: secret(s),
    }
}

fn password_request(client: ClientAuth, username: &str, password: &str) -> TokenRequest {
    TokenRequest {
        username: Some(username.to_owned()),
        password: Some(secret(password)),
        ..TokenRequest::new("password", client)
    }
}

fn refresh_request(client_id: &str, refresh_token: &str) -> TokenRequest {
    TokenRequest {
        refresh_token: Some(secret(refresh_token)),
        ..TokenRequest::new("refresh_token", id_only(client_id))
    }
}

/// The OAuth error of a call that must fail with one.
#[track_caller]
fn oauth_error<T: std::fmt::Debug>(result: Result<T, EngineError>) -> OAuthError {
    match result {
        Err(EngineError::OAuth(e)) => e,
        other => panic!("expected an OAuth error, got {other:?}"),
    }
}

#[track_caller]
fn error_code<T: std::fmt::Debug>(result: Result<T, EngineError>) -> ErrorCode {
    oauth_error(result).code
}

#[track_caller]
fn assert_invalid(result: Result<Principal, BearerError>) {
    assert!(
        matches!(result, Err(BearerError::Invalid(_))),
        "expected the bearer token to be refused, got {result:?}"
    );
}

fn refresh_token(tokens: &IssuedTokens) -> &str {
    tokens
        .refresh_token
        .as_deref()
        .expect("a refresh token was issued")
}

/// One engine over a fresh in-memory store, with its clock.
struct Harness {
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
    master: MasterKey,
    /// The engine's own stores, for tests that look behind it.
    stores: Stores,
}

impl Harness {
    async fn new() -> Self {
        let clock = Arc::new(ManualClock::new(START));
        let master = MasterKey::generate(&OsRandom);
        let stores = MemoryStore::stores();
        let engine = Engine::new(
            config(),
            stores.clone(),
            master.clone(),
            clock.clone(),
            Arc::new(OsRandom),
        )
        .await
        .expect("engine starts");
        Harness {
            engine: Arc::new(engine),
            clock,
            master,
            stores,
        }
    }

    fn engine_master_key(&self) -> MasterKey {
        self.master.clone()
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(secs);
    }

    async fn public_client(&self, c: Client) {
        let generated = self
            .engine
            .admin()
            .create_client(c, false, None)
            .await
            .unwrap();
        assert_eq!(generated, None);
    }

    /// Registers `c` as confidential with [`CLIENT_SECRET`].
    async fn confidential_client(&self, c: Client) {
        self.engine
            .admin()
            .create_client(c, true, Some(secret(CLIENT_SECRET)))
            .await
            .unwrap();
    }

    async fn user(&self, username: &str, allowed_scopes: Option<&str>) -> User {
        self.engine
            .admin()
            .create_user(username, &secret(PASSWORD), allowed_scopes.map(scopes))
            .await
            .unwrap()
    }

    /// Password grant by a public client, with the right password.
    async fn login(
        &self,
        client_id: &str,
        username: &str,
        scope: Option<&str>,
    ) -> Result<IssuedTokens, EngineError> {
        let request = TokenRequest {
            scope: scope.map(str::to_owned),
            ..password_request(id_only(client_id), username, PASSWORD)
        };
        self.engine.tokens().token(&request).await
    }

    async fn refresh(&self, client_id: &str, token: &str) -> Result<IssuedTokens, EngineError> {
        self.engine
            .tokens()
            .token(&refresh_request(client_id, token))
            .await
    }

    async fn client_credentials(&self, auth: ClientAuth) -> Result<IssuedTokens, EngineError> {
        self.engine
            .tokens()
            .token(&TokenRequest::new("client_credentials", auth))
            .await
    }

    async fn validate(&self, token: &str) -> Result<Principal, BearerError> {
        self.engine.tokens().validate_bearer(token).await
    }
}

/// A harness with public client `app` (policy as given) and user `alice`, already logged in
/// with `offline_access read`.
async fn logged_in(policy: TokenPolicy) -> (Harness, IssuedTokens) {
    let h = Harness::new().await;
    h.public_client(with_policy("app", policy)).await;
    h.user("alice", None).await;
    let tokens = h
        .login("app", "alice", Some("offline_access read"))
        .await
        .unwrap();
    assert!(tokens.refresh_token.is_some());
    (h, tokens)
}

fn opaque_policy() -> TokenPolicy {
    TokenPolicy {
        access_format: AccessTokenFormat::Opaque,
        ..TokenPolicy::default()
    }
}

// ---- password grant (RFC 6749 §4.3) ----

#[tokio::test]
async fn password_grant_with_right_credentials_grants_the_default_scopes_to_the_user() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    let alice = h.user("alice", None).await;

    let tokens = h.login("app", "alice", None).await.unwrap();

    assert_eq!(tokens.scope.to_string(), "read write");
    assert_eq!(tokens.subject, alice.id);
    assert_eq!(tokens.client_id, "app");
    assert_eq!(tokens.expires_in, TokenPolicy::default().access_ttl);
    let principal = h.validate(&tokens.access_token).await.unwrap();
    assert_eq!(principal.subject, alice.id);
    assert!(alice.id.starts_with("usr_"));
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_invalid_grant() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    h.user("alice", None).await;

    let wrong_password = oauth_error(
        h.engine
            .tokens()
            .token(&password_request(id_only("app"), "alice", "@Password124"))
            .await,
    );
    let unknown_user = oauth_error(
        h.engine
            .tokens()
            .token(&password_request(id_only("app"), "mallory", PASSWORD))
            .await,
    );

    assert_eq!(wrong_password.code, ErrorCode::InvalidGrant);
    assert_eq!(wrong_password, unknown_user);
}

#[tokio::test]
async fn disabled_user_with_the_right_password_gets_invalid_grant() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    h.user("alice", None).await;
    assert!(
        h.stores
            .users
            .set_user_disabled("alice", true)
            .await
            .unwrap()
    );

    let result = h.login("app", "alice", None).await;

    assert_eq!(error_code(result), ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn password_grant_without_username_or_password_is_invalid_request() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    h.user("alice", None).await;
    let no_username = TokenRequest {
        username: None,
        ..password_request(id_only("app"), "alice", PASSWORD)
    };
    let no_password = TokenRequest {
        password: None,
        ..password_request(id_only("app"), "alice", PASSWORD)
    };

    let without_username = h.engine.tokens().token(&no_username).await;
    let without_password = h.engine.tokens().token(&no_password).await;

    assert_eq!(error_code(without_username), ErrorCode::InvalidRequest);
    assert_eq!(error_code(without_password), ErrorCode::InvalidRequest);
}

// ---- scope rules (RFC 6749 §3.3) ----

#[tokio::test]
async fn requested_subset_of_allowed_scopes_is_granted_exactly_and_rendered_sorted() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    h.user("alice", None).await;

    let tokens = h.login("app", "alice", Some("write  admin")).await.unwrap();

    assert_eq!(tokens.scope.to_string(), "admin write");
    let principal = h.validate(&tokens.access_token).await.unwrap();
    assert_eq!(principal.scope, scopes("admin write"));
}

#[tokio::test]
async fn requesting_a_scope_beyond_the_clients_allowed_scopes_is_invalid_scope() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    h.user("alice", None).await;

    let result = h.login("app", "alice", Some("read delete")).await;

    assert_eq!(error_code(result), ErrorCode::InvalidScope);
}

#[tokio::test]
async fn malformed_scope_is_invalid_scope() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    h.user("alice", None).await;

    let result = h.login("app", "alice", Some("read \"write\"")).await;

    assert_eq!(error_code(result), ErrorCode::InvalidScope);
}

#[tokio::test]
async fn user_allowed_scopes_restrict_both_requested_and_default_scopes() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    h.user("reader", Some("offline_access read")).await;

    let defaults = h.login("app", "reader", None).await.unwrap();
    let within = h.login("app", "reader", Some("read")).await.unwrap();
    let beyond = h.login("app", "reader", Some("read write")).await;

    assert_eq!(defaults.scope.to_string(), "read");
    assert_eq!(within.scope.to_string(), "read");
    assert_eq!(error_code(beyond), ErrorCode::InvalidScope);
}

#[tokio::test]
async fn offline_access_policy_issues_a_refresh_token_only_when_offline_access_is_granted() {
    let h = Harness::new().await;
    let policy = TokenPolicy {
        refresh: RefreshIssuance::OfflineAccess,
        ..TokenPolicy::default()
    };
    h.public_client(with_policy("app", policy)).await;
    h.user("alice", None).await;

    let without = h.login("app", "alice", Some("read")).await.unwrap();
    let with = h
        .login("app", "alice", Some("offline_access read"))
        .await
        .unwrap();

    assert_eq!(without.refresh_token, None);
    assert_eq!(without.refresh_expires_in, None);
    assert!(with.refresh_token.is_some());
    assert_eq!(with.scope.to_string(), "offline_access read");
}

#[tokio::test]
async fn always_policy_issues_a_refresh_token_without_offline_access() {
    let h = Harness::new().await;
    let policy = TokenPolicy {
        refresh: RefreshIssuance::Always,
        ..TokenPolicy::default()
    };
    h.public_client(with_policy("app", policy)).await;
    h.user("alice", None).await;

    let tokens = h.login("app", "alice", Some("read")).await.unwrap();

    assert!(tokens.refresh_token.is_some());
}

#[tokio::test]
async fn never_policy_issues_no_refresh_token_even_with_offline_access() {
    let h = Harness::new().await;
    let policy = TokenPolicy {
        refresh: RefreshIssuance::Never,
        ..TokenPolicy::default()
    };
    h.public_client(with_policy("app", policy)).await;
    h.user("alice", None).await;

    let tokens = h
        .login("app", "alice", Some("offline_access read"))
        .await
        .unwrap();

    assert_eq!(tokens.refresh_token, None);
    assert_eq!(tokens.scope.to_string(), "offline_access read");
}

#[tokio::test]
async fn no_refresh_token_for_a_client_without_the_refresh_token_grant() {
    let h = Harness::new().await;
    h.public_client(Client {
        grant_types: vec![GrantType::Password],
        redirect_uris: Vec::new(),
        ..with_policy(
            "app",
            TokenPolicy {
                refresh: RefreshIssuance::Always,
                ..TokenPolicy::default()
            },
        )
    })
    .await;
    h.user("alice", None).await;

    let tokens = h
        .login("app", "alice", Some("offline_access read"))
        .await
        .unwrap();

    assert_eq!(tokens.refresh_token, None);
}

// ---- client authentication (RFC 6749 §2.3) and grant dispatch ----

#[tokio::test]
async fn public_client_authenticates_by_client_id_alone() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;

    let authenticated = h
        .engine
        .tokens()
        .authenticate_client(&id_only("app"))
        .await
        .unwrap();

    assert_eq!(authenticated.client_id, "app");
    assert!(authenticated.is_public());
}

#[tokio::test]
async fn public_client_presenting_a_secret_is_invalid_client() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;

    let result = h
        .engine
        .tokens()
        .authenticate_client(&basic("app", CLIENT_SECRET))
        .await;

    assert_eq!(error_code(result), ErrorCode::InvalidClient);
}

#[tokio::test]
async fn confidential_client_without_its_secret_is_invalid_client() {
    let h = Harness::new().await;
    h.confidential_client(client("service")).await;

    let id_alone = h.client_credentials(id_only("service")).await;
    let no_auth = h.client_credentials(ClientAuth::None).await;

    assert_eq!(error_code(id_alone), ErrorCode::InvalidClient);
    assert_eq!(error_code(no_auth), ErrorCode::InvalidClient);
}

#[tokio::test]
async fn confidential_client_authenticates_with_its_secret_by_basic_or_post() {
    let h = Harness::new().await;
    h.confidential_client(client("service")).await;
    let post = ClientAuth::Post {
        client_id: "service".to_owned(),
        secret: secret(CLIENT_SECRET),
    };

    let by_basic = h.client_credentials(basic("service", CLIENT_SECRET)).await;
    let by_post = h.client_credentials(post).await;

    assert_eq!(by_basic.unwrap().client_id, "service");
    assert_eq!(by_post.unwrap().client_id, "service");
}

#[tokio::test]
async fn confidential_client_with_a_wrong_secret_is_invalid_client() {
    let h = Harness::new().await;
    h.confidential_client(client("service")).await;
    let wrong = format!("{CLIENT_SECRET}x");

    let result = h.client_credentials(basic("service", &wrong)).await;

    let error = oauth_error(result);
    assert_eq!(error.code, ErrorCode::InvalidClient);
    assert_eq!(error.code.http_status(), 401);
}

#[tokio::test]
async fn unknown_client_is_invalid_client_with_the_same_description_as_a_wrong_secret() {
    let h = Harness::new().await;
    h.confidential_client(client("service")).await;
    let wrong_secret = oauth_error(h.client_credentials(basic("service", "nope")).await);

    let unknown_with_secret =
        oauth_error(h.client_credentials(basic("ghost", CLIENT_SECRET)).await);
    let unknown_by_id = oauth_error(h.client_credentials(id_only("ghost")).await);

    assert_eq!(unknown_with_secret.code, ErrorCode::InvalidClient);
    assert_eq!(unknown_with_secret, wrong_secret);
    assert_eq!(unknown_by_id, wrong_secret);
}

#[tokio::test]
async fn disabled_client_is_invalid_client_even_with_the_right_secret() {
    let h = Harness::new().await;
    h.confidential_client(Client {
        disabled: true,
        ..client("service")
    })
    .await;
    h.public_client(Client {
        disabled: true,
        ..client("app")
    })
    .await;

    let confidential = h.client_credentials(basic("service", CLIENT_SECRET)).await;
    let public = h.engine.tokens().authenticate_client(&id_only("app")).await;

    assert_eq!(error_code(confidential), ErrorCode::InvalidClient);
    assert_eq!(error_code(public), ErrorCode::InvalidClient);
}

#[tokio::test]
async fn grant_missing_from_the_clients_grant_types_is_unauthorized_client() {
    let h = Harness::new().await;
    h.public_client(Client {
        grant_types: vec![GrantType::RefreshToken],
        redirect_uris: Vec::new(),
        ..client("app")
    })
    .await;
    h.user("alice", None).await;

    let result = h.login("app", "alice", None).await;

    assert_eq!(error_code(result), ErrorCode::UnauthorizedClient);
}

#[tokio::test]
async fn missing_grant_type_is_invalid_request() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    let request = TokenRequest {
        grant_type: None,
        ..TokenRequest::new("password", id_only("app"))
    };

    let result = h.engine.tokens().token(&request).await;

    assert_eq!(error_code(result), ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn unknown_grant_type_is_unsupported_grant_type() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;

    let result = h
        .engine
        .tokens()
        .token(&TokenRequest::new("implicit", id_only("app")))
        .await;

    assert_eq!(error_code(result), ErrorCode::UnsupportedGrantType);
}

#[tokio::test]
async fn client_credentials_with_a_public_client_is_unauthorized_client() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;

    let result = h.client_credentials(id_only("app")).await;

    assert_eq!(error_code(result), ErrorCode::UnauthorizedClient);
}

#[tokio::test]
async fn client_credentials_never_issues_a_refresh_token() {
    let h = Harness::new().await;
    let policy = TokenPolicy {
        refresh: RefreshIssuance::Always,
        ..TokenPolicy::default()
    };
    h.confidential_client(with_policy("service", policy)).await;
    let request = TokenRequest {
        scope: Some("offline_access read".to_owned()),
        ..TokenRequest::new("client_credentials", basic("service", CLIENT_SECRET))
    };

    let tokens = h.engine.tokens().token(&request).await.unwrap();

    assert_eq!(tokens.refresh_token, None);
    assert_eq!(tokens.refresh_expires_in, None);
    assert_eq!(tokens.scope.to_string(), "offline_access read");
}

#[tokio::test]
async fn client_credentials_subject_is_the_client_id() {
    let h = Harness::new().await;
    h.confidential_client(client("service")).await;

    let tokens = h
        .client_credentials(basic("service", CLIENT_SECRET))
        .await
        .unwrap();

    assert_eq!(tokens.subject, "service");
    let principal = h.validate(&tokens.access_token).await.unwrap();
    assert_eq!(principal.subject, "service");
    assert_eq!(principal.client_id, "service");
}

// ---- bearer validation (RFC 6750, RFC 9068) ----

#[tokio::test]
async fn jwt_access_token_validates_to_its_principal() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    let alice = h.user("alice", None).await;
    let tokens = h.login("app", "alice", Some("read")).await.unwrap();

    let principal = h.validate(&tokens.access_token).await.unwrap();

    assert_eq!(
        principal,
        Principal {
            subject: alice.id,
            client_id: "app".to_owned(),
            scope: scopes("read"),
            issued_at: START,
            expires_at: START + TokenPolicy::default().access_ttl,
            format: AccessTokenFormat::Jwt,
            otp_hash: None,
            token_id: principal.token_id.clone(),
        }
    );
    assert_eq!(principal.token_id.as_deref().map(str::len), Some(32));
    assert_eq!(tokens.access_token.split('.').count(), 3);
}

#[tokio::test]
async fn jwt_access_token_is_refused_once_the_clock_reaches_exp() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    h.user("alice", None).await;
    let tokens = h.login("app", "alice", None).await.unwrap();
    let ttl = TokenPolicy::default().access_ttl;

    h.advance(ttl - 1);
    let just_before = h.validate(&tokens.access_token).await;
    h.advance(1);
    let at_exp = h.validate(&tokens.access_token).await;

    assert!(just_before.is_ok(), "{just_before:?}");
    assert_eq!(at_exp, Err(BearerError::Invalid("expired")));
}

#[tokio::test]
async fn opaque_access_token_validates_to_its_principal() {
    let h = Harness::new().await;
    h.public_client(with_policy("app", opaque_policy())).await;
    let alice = h.user("alice", None).await;
    let tokens = h.login("app", "alice", Some("write")).await.unwrap();

    let principal = h.validate(&tokens.access_token).await.unwrap();

    assert_eq!(tokens.access_token.len(), 43);
    assert!(!tokens.access_token.contains('.'));
    assert_eq!(
        principal,
        Principal {
            subject: alice.id,
            client_id: "app".to_owned(),
            scope: scopes("write"),
            issued_at: START,
            expires_at: START + TokenPolicy::default().access_ttl,
            format: AccessTokenFormat::Opaque,
            otp_hash: None,
            token_id: None,
        }
    );
}

#[tokio::test]
async fn opaque_access_token_is_refused_once_the_clock_reaches_expiry() {
    let h = Harness::new().await;
    h.public_client(with_policy("app", opaque_policy())).await;
    h.user("alice", None).await;
    let tokens = h.login("app", "alice", None).await.unwrap();
    let ttl = TokenPolicy::default().access_ttl;

    h.advance(ttl - 1);
    let just_before = h.validate(&tokens.access_token).await;
    h.advance(1);
    let at_expiry = h.validate(&tokens.access_token).await;

    assert!(just_before.is_ok(), "{just_before:?}");
    assert_eq!(at_expiry, Err(BearerError::Invalid("expired")));
}

#[tokio::test]
async fn garbage_bearer_tokens_are_refused() {
    let h = Harness::new().await;

    for garbage in [
        "",
        "garbage",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.",
        &"x".repeat(5000),
    ] {
        assert_invalid(h.validate(garbage).await);
    }
}

#[tokio::test]
async fn tampered_jwt_is_refused() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    h.user("alice", None).await;
    let jwt = h
        .login("app", "alice", Some("read"))
        .await
        .unwrap()
        .access_token;
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["scope"] = "admin read write".into();
    let forged_payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[0] ^= 1;
    let bad_signature = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(signature)
    );

    let with_forged_claims = h.validate(&forged).await;
    let with_bad_signature = h.validate(&bad_signature).await;

    assert!(h.validate(&jwt).await.is_ok());
    assert_invalid(with_forged_claims);
    assert_invalid(with_bad_signature);
}

#[tokio::test]
async fn jwt_signed_by_another_engines_key_is_refused() {
    let ours = Harness::new().await;
    let theirs = Harness::new().await;
    for h in [&ours, &theirs] {
        h.public_client(client("app")).await;
    }
    theirs.user("alice", None).await;
    let foreign = theirs.login("app", "alice", None).await.unwrap();
    assert!(theirs.validate(&foreign.access_token).await.is_ok());

    let result = ours.validate(&foreign.access_token).await;

    assert_invalid(result);
}

// ---- refresh rotation and reuse detection (RFC 6749 §6, RFC 9700 §4.14.2) ----

#[tokio::test]
async fn refresh_returns_a_new_refresh_token_and_a_valid_access_token() {
    let (h, first) = logged_in(TokenPolicy::default()).await;

    let second = h.refresh("app", refresh_token(&first)).await.unwrap();

    assert_ne!(refresh_token(&second), refresh_token(&first));
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(second.scope, first.scope);
    assert_eq!(second.subject, first.subject);
    let principal = h.validate(&second.access_token).await.unwrap();
    assert_eq!(principal.subject, first.subject);
    // The successor is live: it rotates in turn.
    let third = h.refresh("app", refresh_token(&second)).await.unwrap();
    assert_ne!(refresh_token(&third), refresh_token(&second));
}

#[tokio::test]
async fn reuse_inside_the_window_returns_the_same_successor_and_keeps_the_family() {
    let (h, first) = logged_in(TokenPolicy {
        reuse_window: 5,
        ..TokenPolicy::default()
    })
    .await;
    let second = h.refresh("app", refresh_token(&first)).await.unwrap();

    h.advance(5);
    let retried = h.refresh("app", refresh_token(&first)).await.unwrap();

    assert_eq!(refresh_token(&retried), refresh_token(&second));
    assert_eq!(
        retried.refresh_expires_in,
        second.refresh_expires_in.map(|s| s - 5)
    );
    assert!(h.validate(&retried.access_token).await.is_ok());
    assert!(h.validate(&second.access_token).await.is_ok());
    assert!(h.validate(&first.access_token).await.is_ok());
    assert!(h.refresh("app", refresh_token(&second)).await.is_ok());
}

/// Reuse after the window revokes the family: the replayed token, its successor and every
/// access token of the family stop working.
async fn assert_reuse_after_the_window_revokes_the_family(policy: TokenPolicy) {
    let window = policy.reuse_window;
    let (h, first) = logged_in(policy).await;
    let second = h.refresh("app", refresh_token(&first)).await.unwrap();
    assert!(h.validate(&first.access_token).await.is_ok());
    assert!(h.validate(&second.access_token).await.is_ok());

    h.advance(window + 1);
    let replay = h.refresh("app", refresh_token(&first)).await;

    assert_eq!(error_code(replay), ErrorCode::InvalidGrant);
    let successor = h.refresh("app", refresh_token(&second)).await;
    assert_eq!(error_code(successor), ErrorCode::InvalidGrant);
    assert_invalid(h.validate(&first.access_token).await);
    assert_invalid(h.validate(&second.access_token).await);
}

#[tokio::test]
async fn reuse_after_the_window_revokes_the_family_and_its_jwt_access_tokens() {
    assert_reuse_after_the_window_revokes_the_family(TokenPolicy {
        reuse_window: 5,
        ..TokenPolicy::default()
    })
    .await;
}

#[tokio::test]
async fn reuse_after_the_window_revokes_the_family_and_its_opaque_access_tokens() {
    assert_reuse_after_the_window_revokes_the_family(TokenPolicy {
        reuse_window: 5,
        ..opaque_policy()
    })
    .await;
}

#[tokio::test]
async fn with_reuse_window_zero_a_second_redemption_fails_and_revokes_the_family() {
    let (h, first) = logged_in(TokenPolicy {
        reuse_window: 0,
        ..TokenPolicy::default()
    })
    .await;
    let second = h.refresh("app", refresh_token(&first)).await.unwrap();

    // Same second: no grace at all.
    let replay = h.refresh("app", refresh_token(&first)).await;

    assert_eq!(error_code(replay), ErrorCode::InvalidGrant);
    let successor = h.refresh("app", refresh_token(&second)).await;
    assert_eq!(error_code(successor), ErrorCode::InvalidGrant);
    assert_invalid(h.validate(&second.access_token).await);
}

/// Redeems `token` from 50 tasks released together; returns their results.
async fn redeem_concurrently(h: &Harness, token: &str) -> Vec<Result<IssuedTokens, EngineError>> {
    const N: usize = 50;
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let request = refresh_request("app", token);
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let engine = h.engine.clone();
            let barrier = barrier.clone();
            let request = request.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                engine.tokens().token(&request).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(N);
    for task in tasks {
        results.push(task.await.expect("task did not panic"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redemptions_inside_the_window_all_get_the_identical_successor() {
    let (h, first) = logged_in(TokenPolicy {
        reuse_window: 5,
        ..TokenPolicy::default()
    })
    .await;

    let results = redeem_concurrently(&h, refresh_token(&first)).await;

    let successors: Vec<String> = results
        .into_iter()
        .map(|r| r.expect("every redemption succeeds").refresh_token.unwrap())
        .collect();
    assert_eq!(successors.len(), 50);
    assert!(successors.iter().all(|s| *s == successors[0]));
    assert_ne!(successors[0], refresh_token(&first));
    assert!(h.refresh("app", &successors[0]).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redemptions_with_window_zero_succeed_exactly_once() {
    let (h, first) = logged_in(TokenPolicy {
        reuse_window: 0,
        ..TokenPolicy::default()
    })
    .await;

    let results = redeem_concurrently(&h, refresh_token(&first)).await;

    let (ok, err): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(ok.len(), 1);
    assert!(
        err.into_iter()
            .all(|e| error_code(e) == ErrorCode::InvalidGrant)
    );
}

#[tokio::test]
async fn refresh_may_narrow_the_granted_scope() {
    let (h, first) = logged_in(TokenPolicy::default()).await;
    let request = TokenRequest {
        scope: Some("read".to_owned()),
        ..refresh_request("app", refresh_token(&first))
    };

    let narrowed = h.engine.tokens().token(&request).await.unwrap();

    assert_eq!(narrowed.scope.to_string(), "read");
    let principal = h.validate(&narrowed.access_token).await.unwrap();
    assert_eq!(principal.scope, scopes("read"));
    // Narrowing one access token does not shrink the session.
    let next = h.refresh("app", refresh_token(&narrowed)).await.unwrap();
    assert_eq!(next.scope.to_string(), "offline_access read");
}

#[tokio::test]
async fn refresh_may_not_widen_the_granted_scope() {
    let (h, first) = logged_in(TokenPolicy::default()).await;
    // `write` is allowed for the client but was not granted to this session.
    let request = TokenRequest {
        scope: Some("read write".to_owned()),
        ..refresh_request("app", refresh_token(&first))
    };

    let widened = h.engine.tokens().token(&request).await;

    assert_eq!(error_code(widened), ErrorCode::InvalidScope);
}

#[tokio::test]
async fn refresh_token_presented_by_another_client_is_invalid_grant() {
    let (h, first) = logged_in(TokenPolicy::default()).await;
    h.public_client(client("other")).await;

    let by_other = h.refresh("other", refresh_token(&first)).await;

    assert_eq!(error_code(by_other), ErrorCode::InvalidGrant);
    // The attempt neither consumed nor revoked the token for its own client.
    assert!(h.refresh("app", refresh_token(&first)).await.is_ok());
}

#[tokio::test]
async fn refresh_token_is_refused_once_refresh_ttl_has_passed() {
    let policy = TokenPolicy {
        refresh_ttl: 600,
        ..TokenPolicy::default()
    };
    let (h, first) = logged_in(policy).await;
    let other_session = h
        .login("app", "alice", Some("offline_access read"))
        .await
        .unwrap();
    assert_eq!(first.refresh_expires_in, Some(600));

    h.advance(599);
    let just_before = h.refresh("app", refresh_token(&first)).await;
    h.advance(1);
    let at_expiry = h.refresh("app", refresh_token(&other_session)).await;

    assert!(just_before.is_ok(), "{just_before:?}");
    assert_eq!(error_code(at_expiry), ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn refresh_is_refused_after_the_absolute_session_lifetime() {
    let policy = TokenPolicy {
        refresh_ttl: 600,
        session_lifetime: 1000,
        ..TokenPolicy::default()
    };
    let (h, first) = logged_in(policy).await;
    h.advance(400);
    let second = h.refresh("app", refresh_token(&first)).await.unwrap();
    h.advance(400);
    let third = h.refresh("app", refresh_token(&second)).await.unwrap();

    // Rotated only 200 s ago, well inside refresh_ttl, but the session began 1000 s ago.
    h.advance(200);
    let after_session = h.refresh("app", refresh_token(&third)).await;

    assert_eq!(error_code(after_session), ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn successors_never_outlive_the_session_lifetime() {
    let policy = TokenPolicy {
        refresh_ttl: 600,
        session_lifetime: 900,
        ..TokenPolicy::default()
    };
    let (h, first) = logged_in(policy).await;

    h.advance(400);
    let second = h.refresh("app", refresh_token(&first)).await.unwrap();
    h.advance(400);
    let third = h.refresh("app", refresh_token(&second)).await.unwrap();

    assert_eq!(first.refresh_expires_in, Some(600));
    assert_eq!(second.refresh_expires_in, Some(500));
    assert_eq!(third.refresh_expires_in, Some(100));
}

#[tokio::test]
async fn first_refresh_token_never_outlives_the_session_lifetime() {
    let (_h, first) = logged_in(TokenPolicy {
        refresh_ttl: 600,
        session_lifetime: 300,
        ..TokenPolicy::default()
    })
    .await;

    assert_eq!(first.refresh_expires_in, Some(300));
}

#[tokio::test]
async fn refresh_for_a_user_disabled_meanwhile_is_invalid_grant() {
    let (h, first) = logged_in(TokenPolicy::default()).await;
    h.stores
        .users
        .set_user_disabled("alice", true)
        .await
        .unwrap();

    let result = h.refresh("app", refresh_token(&first)).await;

    assert_eq!(error_code(result), ErrorCode::InvalidGrant);
}

// ---- signing-key rotation ----

fn kid_of(jwt: &str) -> String {
    let header = jwt.split('.').next().expect("a JWT header");
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("JSON");
    header["kid"].as_str().expect("a kid").to_owned()
}

/// `rotate_signing_key` with the CLI's default lead, expecting it to be scheduled.
async fn schedule_rotation(engine: &Engine, lead_secs: u64) -> (String, UnixTime, UnixTime) {
    match engine
        .admin()
        .rotate_signing_key(KeyRotation::After { lead_secs })
        .await
        .unwrap()
    {
        RotationOutcome::Scheduled {
            kid,
            activates_at,
            old_keys_retire_at,
        } => (kid, activates_at, old_keys_retire_at),
        pending => panic!("not scheduled: {pending:?}"),
    }
}

fn published(engine: &Engine, now: UnixTime) -> Vec<String> {
    let jwks: serde_json::Value =
        serde_json::from_str(&engine.tokens().key_ring().jwks(now).body).expect("JWKS is JSON");
    jwks["keys"]
        .as_array()
        .expect("a key list")
        .iter()
        .map(|k| k["kid"].as_str().expect("a kid").to_owned())
        .collect()
}

#[tokio::test]
async fn before_activation_the_old_key_signs_and_both_keys_are_published() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    h.user("alice", None).await;
    let old_kid = kid_of(&h.login("app", "alice", None).await.unwrap().access_token);

    let (new_kid, activates_at, _) = schedule_rotation(&h.engine, 600).await;
    h.advance(599);
    let during_lead = h.login("app", "alice", None).await.unwrap();

    assert_eq!(activates_at, START + 600);
    assert_eq!(kid_of(&during_lead.access_token), old_kid);
    assert_eq!(published(&h.engine, h.clock.now()), [old_kid, new_kid]);
}

#[tokio::test]
async fn at_activation_the_new_key_signs_without_a_reload() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    h.user("alice", None).await;
    let before = h.login("app", "alice", None).await.unwrap();
    let (new_kid, _, _) = schedule_rotation(&h.engine, 600).await;

    h.advance(600);
    let after = h.login("app", "alice", None).await.unwrap();

    assert_ne!(kid_of(&before.access_token), new_kid);
    assert_eq!(kid_of(&after.access_token), new_kid);
    assert_eq!(
        h.engine.tokens().key_ring().current_kid(h.clock.now()),
        Some(new_kid.as_str())
    );
    assert!(h.validate(&after.access_token).await.is_ok());
}

#[tokio::test]
async fn jwt_minted_before_a_key_rotation_still_validates_after_the_switch() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    h.user("alice", None).await;
    schedule_rotation(&h.engine, 600).await;
    h.advance(599);
    // Signed by the old key in the last second it signs, so it lives longest past the switch.
    let last_old = h.login("app", "alice", None).await.unwrap();

    h.advance(last_old.expires_in - 1);
    let result = h.validate(&last_old.access_token).await;

    assert_eq!(result.unwrap().format, AccessTokenFormat::Jwt);
}

#[tokio::test]
async fn the_old_keys_stay_published_for_the_longest_access_token_lifetime_plus_skew() {
    let h = Harness::new().await;
    let long = TokenPolicy {
        access_ttl: 7200,
        ..TokenPolicy::default()
    };
    h.public_client(with_policy("long", long)).await;
    h.public_client(client("app")).await;
    let old_kid = h
        .engine
        .tokens()
        .key_ring()
        .current_kid(START)
        .unwrap()
        .to_owned();

    let (new_kid, activates_at, retire_at) = schedule_rotation(&h.engine, 600).await;

    assert_eq!(retire_at, activates_at + 7200 + 60);
    assert_eq!(
        published(&h.engine, retire_at - 1),
        [old_kid.clone(), new_kid.clone()]
    );
    assert_eq!(published(&h.engine, retire_at), [new_kid]);
}

#[tokio::test]
async fn the_old_keys_stay_published_at_least_an_hour_whatever_the_policies() {
    let h = Harness::new().await;
    let short = TokenPolicy {
        access_ttl: 60,
        ..TokenPolicy::default()
    };
    h.public_client(with_policy("short", short)).await;

    let (_, activates_at, retire_at) = schedule_rotation(&h.engine, 600).await;

    assert_eq!(retire_at, activates_at + 3600 + 60);
}

#[tokio::test]
async fn a_token_of_a_retired_key_is_refused() {
    let h = Harness::new().await;
    let long = TokenPolicy {
        access_ttl: 7200,
        ..TokenPolicy::default()
    };
    h.public_client(with_policy("long", long)).await;
    h.user("alice", None).await;
    let old = h.login("long", "alice", None).await.unwrap();
    // Lower the longest lifetime after the token was minted: the schedule now ends the old key
    // before its token expires, and retirement, not expiry, must stop it.
    let short = TokenPolicy {
        access_ttl: 60,
        ..TokenPolicy::default()
    };
    h.stores.clients.delete_client("long").await.unwrap();
    h.public_client(with_policy("short", short)).await;
    let (_, _, retire_at) = schedule_rotation(&h.engine, 0).await;
    assert!(retire_at < START + 7200, "the token outlives its key");

    h.advance(retire_at - START - 1);
    assert!(h.validate(&old.access_token).await.is_ok());
    h.advance(1);
    assert!(matches!(
        h.validate(&old.access_token).await,
        Err(BearerError::Invalid(_))
    ));
}

#[tokio::test]
async fn a_rotation_is_refused_while_another_is_pending() {
    let h = Harness::new().await;
    let (pending_kid, activates_at, _) = schedule_rotation(&h.engine, 600).await;

    let second = h
        .engine
        .admin()
        .rotate_signing_key(KeyRotation::After { lead_secs: 600 })
        .await
        .unwrap();
    assert_eq!(
        second,
        RotationOutcome::Pending {
            kid: pending_kid.clone(),
            activates_at
        }
    );
    assert_eq!(h.stores.keys.list_keys().await.unwrap().len(), 2);

    // Once it has activated, the next rotation may be scheduled.
    h.advance(600);
    let (third, _, _) = schedule_rotation(&h.engine, 600).await;
    assert_ne!(third, pending_kid);
}

#[tokio::test]
async fn a_danger_immediate_rotation_signs_at_once_and_refuses_every_older_token() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    h.user("alice", None).await;
    let before = h.login("app", "alice", None).await.unwrap();
    // Even with a rotation pending: a compromised key cannot wait for it.
    schedule_rotation(&h.engine, 600).await;

    let outcome = h
        .engine
        .admin()
        .rotate_signing_key(KeyRotation::DangerImmediate)
        .await
        .unwrap();
    let RotationOutcome::Scheduled {
        kid, activates_at, ..
    } = outcome
    else {
        panic!("refused: {outcome:?}");
    };
    let after = h.login("app", "alice", None).await.unwrap();

    assert_eq!(activates_at, START);
    assert_eq!(kid_of(&after.access_token), kid);
    assert!(h.validate(&after.access_token).await.is_ok());
    assert!(h.validate(&before.access_token).await.is_err());
    assert_eq!(published(&h.engine, START), [kid]);
}

// ---- administration ----

#[tokio::test]
async fn operator_client_secret_shorter_than_the_minimum_is_rejected() {
    let h = Harness::new().await;
    let short = "s".repeat(MIN_CLIENT_SECRET_LEN - 1);

    let result = h
        .engine
        .admin()
        .create_client(client("service"), true, Some(secret(&short)))
        .await;

    assert_eq!(error_code(result), ErrorCode::InvalidRequest);
    let stored = h.stores.clients.find_client("service").await;
    assert_eq!(stored.unwrap(), None);
}

#[tokio::test]
async fn generated_client_secret_is_43_characters_and_authenticates() {
    let h = Harness::new().await;

    let generated = h
        .engine
        .admin()
        .create_client(client("service"), true, None)
        .await
        .unwrap()
        .expect("a secret is generated for a confidential client");

    assert_eq!(generated.chars().count(), 43);
    let authenticated = h
        .engine
        .tokens()
        .authenticate_client(&basic("service", &generated))
        .await
        .unwrap();
    assert!(!authenticated.is_public());
    let stored = authenticated.secret_hash.unwrap();
    assert!(!stored.contains(&generated));
}

#[tokio::test]
async fn rotating_a_client_secret_invalidates_the_old_one() {
    let h = Harness::new().await;
    h.confidential_client(client("service")).await;

    let new_secret = h
        .engine
        .admin()
        .rotate_client_secret("service", None)
        .await
        .unwrap()
        .expect("the client exists");

    assert_eq!(new_secret.len(), 43);
    let old = h.client_credentials(basic("service", CLIENT_SECRET)).await;
    assert_eq!(error_code(old), ErrorCode::InvalidClient);
    let new = h.client_credentials(basic("service", &new_secret)).await;
    assert_eq!(new.unwrap().subject, "service");
}

// ---- replay is judged before anything else; sessions bound every token ----

#[tokio::test]
async fn replay_asking_for_a_wider_scope_still_revokes_the_family() {
    let (h, first) = logged_in(TokenPolicy {
        reuse_window: 0,
        ..TokenPolicy::default()
    })
    .await;
    let second = h.refresh("app", refresh_token(&first)).await.unwrap();

    let replay = TokenRequest {
        scope: Some("admin".into()),
        ..refresh_request("app", refresh_token(&first))
    };
    let replayed = h.engine.tokens().token(&replay).await;

    assert_eq!(error_code(replayed), ErrorCode::InvalidGrant);
    let successor = h.refresh("app", refresh_token(&second)).await;
    assert_eq!(error_code(successor), ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn replay_of_an_expired_spent_token_still_revokes_the_family() {
    let (h, first) = logged_in(TokenPolicy {
        refresh_ttl: 60,
        reuse_window: 5,
        ..TokenPolicy::default()
    })
    .await;
    h.advance(30);
    let second = h.refresh("app", refresh_token(&first)).await.unwrap();

    h.advance(40); // `first` is now spent AND past its own refresh_ttl.
    let replayed = h.refresh("app", refresh_token(&first)).await;

    assert_eq!(error_code(replayed), ErrorCode::InvalidGrant);
    let successor = h.refresh("app", refresh_token(&second)).await;
    assert_eq!(error_code(successor), ErrorCode::InvalidGrant);
}

#[tokio::test]
async fn access_tokens_never_outlive_their_session() {
    let (h, first) = logged_in(TokenPolicy {
        access_ttl: 3600,
        refresh_ttl: 600,
        session_lifetime: 900,
        ..opaque_policy()
    })
    .await;
    assert_eq!(first.expires_in, 900);

    h.advance(500);
    let second = h.refresh("app", refresh_token(&first)).await.unwrap();

    assert_eq!(second.expires_in, 400);
    h.advance(400);
    assert_invalid(h.validate(&second.access_token).await);
}

#[tokio::test]
async fn a_public_client_cannot_be_given_a_secret_by_rotation() {
    let h = Harness::new().await;
    h.public_client(client("app")).await;

    let rotated = h.engine.admin().rotate_client_secret("app", None).await;

    assert_eq!(error_code(rotated), ErrorCode::InvalidRequest);
    let c = h.stores.clients.find_client("app").await.unwrap();
    assert!(c.unwrap().is_public());
}

#[tokio::test]
async fn a_key_rotated_in_by_another_node_is_picked_up_on_first_sight() {
    let h = Harness::new().await;
    let other_node = Engine::new(
        config(),
        h.stores.clone(),
        // Same database, same master key: a second node.
        h.engine_master_key(),
        h.clock.clone(),
        Arc::new(OsRandom),
    )
    .await
    .unwrap();
    schedule_rotation(&other_node, 600).await;
    h.advance(600);
    h.public_client(client("app")).await;
    other_node
        .admin()
        .create_user("alice", &secret(PASSWORD), None)
        .await
        .unwrap();
    let request = password_request(id_only("app"), "alice", PASSWORD);
    let tokens = other_node.tokens().token(&request).await.unwrap();

    // This node never reloaded its keys, yet the new kid is fetched when first seen.
    assert!(h.validate(&tokens.access_token).await.is_ok());
}

#[tokio::test]
async fn a_secret_rotated_by_another_process_works_at_once_and_the_old_one_until_the_cache_expires()
{
    let h = Harness::new().await;
    h.confidential_client(client("svc")).await;
    assert!(
        h.client_credentials(basic("svc", CLIENT_SECRET))
            .await
            .is_ok()
    );

    // Another process (the CLI, another node) rotates the secret in the shared store.
    let other_node = Engine::new(
        config(),
        h.stores.clone(),
        h.engine_master_key(),
        h.clock.clone(),
        Arc::new(OsRandom),
    )
    .await
    .unwrap();
    let new_secret = other_node
        .admin()
        .rotate_client_secret("svc", None)
        .await
        .unwrap()
        .unwrap();

    assert!(
        h.client_credentials(basic("svc", &new_secret))
            .await
            .is_ok()
    );
    h.advance(config().client_cache_secs);
    let old = h.client_credentials(basic("svc", CLIENT_SECRET)).await;
    assert_eq!(error_code(old), ErrorCode::InvalidClient);
}

// ---- revocation (RFC 7009) and introspection (RFC 7662) ----

impl Harness {
    /// A second node: another engine over the same store and clock.
    async fn sibling(&self) -> Engine {
        Engine::new(
            config(),
            self.stores.clone(),
            self.master.clone(),
            self.clock.clone(),
            Arc::new(OsRandom),
        )
        .await
        .expect("second engine starts")
    }
}

fn hinted(hint: &str) -> Option<&str> {
    Some(hint)
}

#[tokio::test]
async fn revoking_a_jwt_access_token_refuses_it_at_once_on_this_node() {
    let (h, tokens) = logged_in(TokenPolicy::default()).await;
    assert!(h.validate(&tokens.access_token).await.is_ok());

    h.engine
        .tokens()
        .revoke(
            &id_only("app"),
            &tokens.access_token,
            hinted("access_token"),
        )
        .await
        .unwrap();

    assert_eq!(
        h.validate(&tokens.access_token).await,
        Err(BearerError::Invalid("revoked"))
    );
    // Only the access token went: the session's refresh token still works.
    assert!(h.refresh("app", refresh_token(&tokens)).await.is_ok());
}

#[tokio::test]
async fn a_jwt_revoked_on_one_node_is_refused_by_another_within_the_poll_interval() {
    let (h, tokens) = logged_in(TokenPolicy::default()).await;
    let other = h.sibling().await;
    assert!(
        other
            .tokens()
            .validate_bearer(&tokens.access_token)
            .await
            .is_ok()
    );

    h.engine
        .tokens()
        .revoke(&id_only("app"), &tokens.access_token, None)
        .await
        .unwrap();
    h.advance(crate::revocation::POLL_SECS);

    assert_eq!(
        other.tokens().validate_bearer(&tokens.access_token).await,
        Err(BearerError::Invalid("revoked"))
    );
}

#[tokio::test]
async fn revoking_a_refresh_token_kills_its_family_and_the_family_s_jwts() {
    let (h, tokens) = logged_in(TokenPolicy::default()).await;

    // A wrong hint only costs a second lookup.
    h.engine
        .tokens()
        .revoke(
            &id_only("app"),
            refresh_token(&tokens),
            hinted("access_token"),
        )
        .await
        .unwrap();

    assert_invalid(h.validate(&tokens.access_token).await);
    assert_eq!(
        error_code(h.refresh("app", refresh_token(&tokens)).await),
        ErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn revoking_an_opaque_access_token_deletes_it() {
    let (h, tokens) = logged_in(opaque_policy()).await;

    h.engine
        .tokens()
        .revoke(&id_only("app"), &tokens.access_token, None)
        .await
        .unwrap();

    assert_eq!(
        h.validate(&tokens.access_token).await,
        Err(BearerError::Invalid("unknown token"))
    );
}

#[tokio::test]
async fn a_client_cannot_revoke_another_client_s_tokens_and_is_not_told() {
    let (h, tokens) = logged_in(opaque_policy()).await;
    h.public_client(client("intruder")).await;

    let answer = h
        .engine
        .tokens()
        .revoke(&id_only("intruder"), &tokens.access_token, None)
        .await;

    assert!(answer.is_ok(), "{answer:?}");
    assert!(h.validate(&tokens.access_token).await.is_ok());
}

#[tokio::test]
async fn revocation_of_unknown_tokens_succeeds_but_needs_an_authenticated_client() {
    let h = Harness::new().await;
    h.confidential_client(client("rs")).await;

    let unknown = h
        .engine
        .tokens()
        .revoke(&basic("rs", CLIENT_SECRET), "no-such-token", None)
        .await;
    let forged = h
        .engine
        .tokens()
        .revoke(&basic("rs", CLIENT_SECRET), "a.b.c", None)
        .await;
    let wrong_secret = h
        .engine
        .tokens()
        .revoke(&basic("rs", "not-the-secret"), "no-such-token", None)
        .await;

    assert!(unknown.is_ok() && forged.is_ok());
    assert_eq!(error_code(wrong_secret), ErrorCode::InvalidClient);
}

#[tokio::test]
async fn introspection_describes_an_active_jwt_access_token() {
    let (h, tokens) = logged_in(TokenPolicy::default()).await;
    h.confidential_client(client("rs")).await;

    let found = h
        .engine
        .tokens()
        .introspect(&basic("rs", CLIENT_SECRET), &tokens.access_token, None)
        .await
        .unwrap()
        .expect("active");

    assert_eq!(found.kind, crate::revocation::TokenKind::Access);
    assert_eq!(found.client_id, "app");
    assert_eq!(found.subject, tokens.subject);
    assert_eq!(found.scope, scopes("offline_access read"));
    assert_eq!(found.issued_at, START);
    assert_eq!(found.expires_at, START + TokenPolicy::default().access_ttl);
    assert_eq!(
        (found.issuer.as_str(), found.audience.as_str()),
        (ISSUER, AUDIENCE)
    );
    assert!(found.token_id.is_some());
}

#[tokio::test]
async fn introspection_reports_a_refresh_token_active_until_it_is_redeemed() {
    let (h, tokens) = logged_in(opaque_policy()).await;
    h.confidential_client(client("rs")).await;
    let rs = basic("rs", CLIENT_SECRET);
    let rt = refresh_token(&tokens);

    let before = h
        .engine
        .tokens()
        .introspect(&rs, rt, hinted("refresh_token"))
        .await;
    h.refresh("app", rt).await.unwrap();
    let after = h
        .engine
        .tokens()
        .introspect(&rs, rt, hinted("refresh_token"))
        .await;

    let before = before.unwrap().expect("active before redemption");
    assert_eq!(before.kind, crate::revocation::TokenKind::Refresh);
    assert_eq!(before.client_id, "app");
    assert_eq!(after.unwrap(), None);
}

#[tokio::test]
async fn introspection_reports_invalid_tokens_as_inactive() {
    let (h, tokens) = logged_in(opaque_policy()).await;
    h.confidential_client(client("rs")).await;
    let rs = basic("rs", CLIENT_SECRET);
    h.engine
        .tokens()
        .revoke(&id_only("app"), &tokens.access_token, None)
        .await
        .unwrap();

    for token in [tokens.access_token.as_str(), "unknown", "x.y.z", ""] {
        assert_eq!(
            h.engine
                .tokens()
                .introspect(&rs, token, None)
                .await
                .unwrap(),
            None
        );
    }
    let (h2, fresh) = logged_in(TokenPolicy::default()).await;
    h2.confidential_client(client("rs")).await;
    h2.advance(TokenPolicy::default().access_ttl);
    let expired = h2
        .engine
        .tokens()
        .introspect(&rs, &fresh.access_token, None)
        .await;
    assert_eq!(expired.unwrap(), None);
}

#[tokio::test]
async fn introspection_is_refused_to_public_and_unauthenticated_clients() {
    let (h, tokens) = logged_in(TokenPolicy::default()).await;

    let public = h
        .engine
        .tokens()
        .introspect(&id_only("app"), &tokens.access_token, None)
        .await;
    let nobody = h
        .engine
        .tokens()
        .introspect(&ClientAuth::None, &tokens.access_token, None)
        .await;

    assert_eq!(error_code(public), ErrorCode::InvalidClient);
    assert_eq!(error_code(nobody), ErrorCode::InvalidClient);
}

#[tokio::test]
async fn a_jwt_shaped_refresh_token_is_introspected_and_revoked_as_a_refresh_token() {
    let policy = TokenPolicy {
        refresh_format: crate::model::RefreshTokenFormat::Jwt,
        ..TokenPolicy::default()
    };
    let (h, tokens) = logged_in(policy).await;
    h.confidential_client(client("rs")).await;
    let rs = basic("rs", CLIENT_SECRET);
    let rt = refresh_token(&tokens);
    assert_eq!(rt.split('.').count(), 3);

    let found = h.engine.tokens().introspect(&rs, rt, None).await.unwrap();
    h.engine
        .tokens()
        .revoke(&id_only("app"), rt, None)
        .await
        .unwrap();
    let after = h.engine.tokens().introspect(&rs, rt, None).await.unwrap();

    assert_eq!(
        found.map(|i| i.kind),
        Some(crate::revocation::TokenKind::Refresh)
    );
    assert_eq!(after, None);
    assert_invalid(h.validate(&tokens.access_token).await);
}

// ---- authorization code + PKCE (RFC 6749 §4.1, RFC 7636, RFC 9700) ----

mod authorization_code {
    use super::*;
    use crate::authorize::{AuthorizeError, AuthorizeRequest};
    use crate::grant::authorization_code::s256_challenge;

    const REDIRECT: &str = "https://app.example/callback";
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn web_client(id: &str) -> Client {
        Client {
            redirect_uris: vec![REDIRECT.to_owned()],
            allowed_scopes: scopes("openid offline_access read"),
            default_scopes: scopes("read"),
            ..client(id)
        }
    }

    fn authorize_request(client_id: &str, scope: &str) -> AuthorizeRequest {
        AuthorizeRequest {
            response_type: Some("code".into()),
            client_id: Some(client_id.into()),
            redirect_uri: Some(REDIRECT.into()),
            scope: Some(scope.into()),
            state: Some("st".into()),
            code_challenge: Some(s256_challenge(VERIFIER)),
            code_challenge_method: Some("S256".into()),
            nonce: Some("n-0S6_WzA2Mj".into()),
        }
    }

    fn exchange(client_id: &str, code: &str, redirect: &str, verifier: &str) -> TokenRequest {
        TokenRequest {
            code: Some(secret(code)),
            redirect_uri: Some(redirect.to_owned()),
            code_verifier: Some(secret(verifier)),
            ..TokenRequest::new("authorization_code", id_only(client_id))
        }
    }

    /// Validates, signs `alice` in and returns a fresh code for `client_id`.
    async fn code_for(h: &Harness, client_id: &str, scope: &str) -> String {
        let valid = h
            .engine
            .authorization()
            .validate_authorize(&authorize_request(client_id, scope))
            .await
            .unwrap()
            .unwrap();
        let user = h
            .engine
            .authorization()
            .sign_in("alice", &secret(PASSWORD))
            .await
            .unwrap()
            .expect("the right password signs in");
        h.engine
            .authorization()
            .issue_code(&valid, &user)
            .await
            .unwrap()
            .code
    }

    async fn harness() -> Harness {
        let h = Harness::new().await;
        h.public_client(web_client("web")).await;
        h.public_client(web_client("other")).await;
        h.user("alice", None).await;
        h
    }

    #[tokio::test]
    async fn a_code_with_its_verifier_gets_tokens_and_an_id_token() {
        let h = harness().await;
        let code = code_for(&h, "web", "openid offline_access").await;
        let tokens = h
            .engine
            .tokens()
            .token(&exchange("web", &code, REDIRECT, VERIFIER))
            .await
            .unwrap();
        assert!(tokens.refresh_token.is_some());
        let id_token = tokens.id_token.expect("openid asked for an ID token");
        let payload = id_token.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["aud"], "web");
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
        assert_eq!(claims["auth_time"], START);
        h.engine
            .tokens()
            .validate_bearer(&tokens.access_token)
            .await
            .unwrap();
        // An ID token is never an access token (its typ is JWT, not at+jwt).
        assert_invalid(h.engine.tokens().validate_bearer(&id_token).await);
    }

    #[tokio::test]
    async fn a_wrong_verifier_redirect_or_client_is_invalid_grant() {
        let h = harness().await;
        let code = code_for(&h, "web", "read").await;
        let wrong_verifier = "x".repeat(43);
        for request in [
            exchange("web", &code, REDIRECT, &wrong_verifier),
            exchange("web", &code, "https://app.example/callback/", VERIFIER),
            exchange("other", &code, REDIRECT, VERIFIER),
            exchange("web", "not-a-code", REDIRECT, VERIFIER),
            exchange("web", &code, REDIRECT, "short"),
        ] {
            assert_eq!(
                error_code(h.engine.tokens().token(&request).await),
                ErrorCode::InvalidGrant
            );
        }
        // None of those consumed the code.
        h.engine
            .tokens()
            .token(&exchange("web", &code, REDIRECT, VERIFIER))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_reused_code_is_refused_and_revokes_what_it_issued() {
        let h = harness().await;
        let code = code_for(&h, "web", "read").await;
        let first = h
            .engine
            .tokens()
            .token(&exchange("web", &code, REDIRECT, VERIFIER))
            .await
            .unwrap();
        assert!(
            first.refresh_token.is_none(),
            "no offline_access, no refresh"
        );
        h.engine
            .tokens()
            .validate_bearer(&first.access_token)
            .await
            .unwrap();

        let again = h
            .engine
            .tokens()
            .token(&exchange("web", &code, REDIRECT, VERIFIER))
            .await;
        assert_eq!(error_code(again), ErrorCode::InvalidGrant);
        assert_invalid(h.engine.tokens().validate_bearer(&first.access_token).await);
    }

    #[tokio::test]
    async fn a_code_expires_after_its_lifetime() {
        let h = harness().await;
        let code = code_for(&h, "web", "read").await;
        h.advance(60);
        let late = h
            .engine
            .tokens()
            .token(&exchange("web", &code, REDIRECT, VERIFIER))
            .await;
        assert_eq!(error_code(late), ErrorCode::InvalidGrant);
    }

    #[tokio::test]
    async fn concurrent_redemptions_of_one_code_have_one_winner() {
        let h = harness().await;
        let code = code_for(&h, "web", "read").await;
        let request = exchange("web", &code, REDIRECT, VERIFIER);
        let (a, b) = tokio::join!(
            h.engine.tokens().token(&request),
            h.engine.tokens().token(&request)
        );
        assert_eq!(usize::from(a.is_ok()) + usize::from(b.is_ok()), 1);
    }

    #[tokio::test]
    async fn unknown_clients_and_unregistered_redirects_are_not_redirected_to() {
        let h = harness().await;
        for request in [
            authorize_request("nobody", "read"),
            AuthorizeRequest {
                redirect_uri: Some("https://evil.example/callback".into()),
                ..authorize_request("web", "read")
            },
        ] {
            let outcome = h
                .engine
                .authorization()
                .validate_authorize(&request)
                .await
                .unwrap();
            assert!(
                matches!(outcome, Err(AuthorizeError::Page(_))),
                "{outcome:?}"
            );
        }
    }

    #[tokio::test]
    async fn wrong_credentials_and_unknown_users_both_fail_to_sign_in() {
        let h = harness().await;
        let wrong = h
            .engine
            .authorization()
            .sign_in("alice", &secret("nope"))
            .await
            .unwrap();
        let unknown = h
            .engine
            .authorization()
            .sign_in("bob", &secret(PASSWORD))
            .await
            .unwrap();
        assert!(wrong.is_none() && unknown.is_none());
    }

    #[tokio::test]
    async fn a_restricted_user_gets_the_scopes_they_may_have() {
        let h = harness().await;
        h.user("carol", Some("read")).await;
        let valid = h
            .engine
            .authorization()
            .validate_authorize(&authorize_request("web", "openid read"))
            .await
            .unwrap()
            .unwrap();
        let carol = h
            .engine
            .authorization()
            .sign_in("carol", &secret(PASSWORD))
            .await
            .unwrap()
            .unwrap();
        let code = h
            .engine
            .authorization()
            .issue_code(&valid, &carol)
            .await
            .unwrap()
            .code;
        let tokens = h
            .engine
            .tokens()
            .token(&exchange("web", &code, REDIRECT, VERIFIER))
            .await
            .unwrap();
        assert_eq!(tokens.scope.to_string(), "read");
        assert!(tokens.id_token.is_none());
    }
}

// ---- lockout after repeated failed sign-ins ----

/// `n` password-grant attempts with a wrong password; each must be the usual invalid_grant.
async fn fail_logins(h: &Harness, username: &str, n: u32) {
    for _ in 0..n {
        let e = oauth_error(
            h.engine
                .tokens()
                .token(&password_request(id_only("app"), username, "wrong"))
                .await,
        );
        assert_eq!(e.detail, crate::error::Detail::BadCredentials);
    }
}

/// The lock's `Retry-After`, or `None` when the attempt was not refused for a lock.
async fn locked_for(h: &Harness, username: &str, password: &str) -> Option<u64> {
    match h
        .engine
        .tokens()
        .token(&password_request(id_only("app"), username, password))
        .await
    {
        Err(EngineError::OAuth(e)) => e
            .retry_after()
            .inspect(|_| assert_eq!(e.code, ErrorCode::InvalidGrant)),
        _ => None,
    }
}

async fn lockout_harness() -> Harness {
    let h = Harness::new().await;
    h.public_client(client("app")).await;
    h.user("alice", None).await;
    h
}

#[tokio::test]
async fn after_the_threshold_even_the_right_password_is_refused_until_the_lock_expires() {
    let h = lockout_harness().await;
    fail_logins(&h, "alice", 5).await;
    assert_eq!(locked_for(&h, "alice", PASSWORD).await, Some(60));
    h.advance(59);
    assert_eq!(locked_for(&h, "alice", PASSWORD).await, Some(1));
    h.advance(1);
    h.login("app", "alice", None)
        .await
        .expect("the lock expired");
    // The success forgot the failures.
    assert_eq!(
        h.engine.admin().login_failures("alice").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn below_the_threshold_nothing_is_locked_and_a_success_resets_the_count() {
    let h = lockout_harness().await;
    fail_logins(&h, "alice", 4).await;
    h.login("app", "alice", None)
        .await
        .expect("4 failures lock nothing");
    fail_logins(&h, "alice", 4).await;
    h.login("app", "alice", None)
        .await
        .expect("the count restarted");
}

#[tokio::test]
async fn each_failure_past_the_threshold_doubles_the_lock_up_to_the_maximum() {
    let h = lockout_harness().await;
    fail_logins(&h, "alice", 5).await;
    let mut expected = 60;
    for _ in 0..8 {
        assert_eq!(locked_for(&h, "alice", "wrong").await, Some(expected));
        // Attempts during the lock do not count: only the expiry lets the next one in.
        h.advance(expected as i64);
        fail_logins(&h, "alice", 1).await;
        expected = (expected * 2).min(3600);
    }
    assert_eq!(expected, 3600);
    assert_eq!(locked_for(&h, "alice", PASSWORD).await, Some(3600));
}

#[tokio::test]
async fn failures_older_than_the_longest_lock_are_forgotten() {
    let h = lockout_harness().await;
    fail_logins(&h, "alice", 4).await;
    h.advance(3601);
    fail_logins(&h, "alice", 1).await;
    let state = h
        .engine
        .admin()
        .login_failures("alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((state.failures, state.locked_until), (1, None));
}

#[tokio::test]
async fn unknown_usernames_are_counted_and_locked_alike() {
    let h = lockout_harness().await;
    fail_logins(&h, "nobody", 5).await;
    assert_eq!(locked_for(&h, "nobody", PASSWORD).await, Some(60));
    // The refusals of a real and of an unknown account read the same.
    fail_logins(&h, "alice", 5).await;
    let real = oauth_error(
        h.engine
            .tokens()
            .token(&password_request(id_only("app"), "alice", PASSWORD))
            .await,
    );
    let unknown = oauth_error(
        h.engine
            .tokens()
            .token(&password_request(id_only("app"), "nobody", PASSWORD))
            .await,
    );
    assert_eq!(real, unknown);
}

#[tokio::test]
async fn the_operator_unlock_lifts_the_lock_at_once() {
    let h = lockout_harness().await;
    fail_logins(&h, "alice", 5).await;
    assert!(
        h.engine
            .admin()
            .unlock_user("alice")
            .await
            .unwrap()
            .is_some()
    );
    h.login("app", "alice", None).await.expect("unlocked");
    assert!(
        h.engine
            .admin()
            .unlock_user("alice")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_login_form_is_locked_by_the_same_count() {
    let h = lockout_harness().await;
    fail_logins(&h, "alice", 5).await;
    let locked = h
        .engine
        .authorization()
        .sign_in("alice", &secret(PASSWORD))
        .await;
    let e = oauth_error(locked);
    assert_eq!(
        e.retry_after(),
        Some(60),
        "the form is told how long: {e:?}"
    );
}

/// `count` wrong password grants for `username` in flight together, the i-th on `engines[i %
/// n]`: how many were checked ("incorrect") and the `Retry-After` of each refused for the lock.
async fn wrong_guesses_at_once(
    engines: &[Arc<Engine>],
    username: &str,
    count: usize,
) -> (usize, Vec<u64>) {
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..count {
        let engine = engines[i % engines.len()].clone();
        let request = password_request(id_only("app"), username, &format!("wrong guess {i}"));
        guesses.spawn(async move { engine.tokens().token(&request).await });
    }
    let mut checked = 0;
    let mut locked = Vec::new();
    for answer in guesses.join_all().await {
        let e = oauth_error(answer);
        match e.detail {
            crate::error::Detail::BadCredentials => checked += 1,
            crate::error::Detail::TemporarilyLocked { retry_after_secs } => {
                locked.push(retry_after_secs)
            }
            other => panic!("neither checked nor locked: {other:?}"),
        }
    }
    (checked, locked)
}

#[tokio::test]
async fn of_sixteen_guesses_at_once_only_threshold_are_checked_and_the_lock_is_the_first() {
    // Arrange: threshold 5, base 60 s, max 3600 s; two nodes over one store.
    let h = lockout_harness().await;
    let nodes = [h.engine.clone(), Arc::new(h.sibling().await)];

    // Act: 16 wrong guesses, all in flight before any has been answered (Argon2 runs on the
    // blocking pool, so each waits there while the others start).
    let (checked, locked) = wrong_guesses_at_once(&nodes, "alice", 16).await;

    // Assert: exactly as many passwords were checked as sequential guesses would have had
    // checked (NIST SP 800-63B §5.2.2 limits guesses, however they arrive), and the lock is
    // base_secs: refused guesses escalate nothing.
    assert_eq!(checked, 5, "passwords checked");
    assert_eq!(locked, vec![60; 11]);
    let state = h
        .engine
        .admin()
        .login_failures("alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.failures, 5);
    assert_eq!(state.locked_until, Some(START + 60));
    assert_eq!(locked_for(&h, "alice", PASSWORD).await, Some(60));
    // The lock ends when base_secs have passed, and the right password then gets in.
    h.advance(60);
    h.login("app", "alice", None)
        .await
        .expect("the lock expired");
}

#[tokio::test]
async fn a_burst_on_an_unknown_username_is_checked_and_locked_like_one_on_a_real_account() {
    let h = lockout_harness().await;
    let nodes = [h.engine.clone()];
    let real = wrong_guesses_at_once(&nodes, "alice", 16).await;
    let unknown = wrong_guesses_at_once(&nodes, "nobody", 16).await;
    assert_eq!(real, (5, vec![60; 11]));
    assert_eq!(
        unknown, real,
        "the burst tells no account from a missing one"
    );
}

#[tokio::test]
async fn unknown_users_and_locked_accounts_run_the_dummy_hash_wrong_passwords_the_real_one() {
    let h = lockout_harness().await;
    let dummy = || h.engine.passwords().dummy_verifications();
    let before = dummy();
    fail_logins(&h, "nobody", 1).await;
    assert_eq!(dummy(), before + 1, "unknown user: one dummy verification");
    fail_logins(&h, "alice", 5).await;
    assert_eq!(
        dummy(),
        before + 1,
        "known user: the real hash, not the dummy"
    );
    assert!(locked_for(&h, "alice", PASSWORD).await.is_some());
    assert_eq!(
        dummy(),
        before + 2,
        "locked account: one dummy verification"
    );
}

#[test]
fn the_lock_schedule_starts_at_the_threshold_and_doubles_to_the_maximum() {
    let p = crate::store::LockoutPolicy {
        threshold: 3,
        base_secs: 10,
        max_secs: 100,
    };
    let got: Vec<_> = (0..8).map(|n| p.lock_secs(n)).collect();
    assert_eq!(
        got,
        [
            None,
            None,
            None,
            Some(10),
            Some(20),
            Some(40),
            Some(80),
            Some(100)
        ]
    );
    assert_eq!(p.lock_secs(u32::MAX), Some(100), "no overflow");
    let off = crate::store::LockoutPolicy { threshold: 0, ..p };
    assert_eq!(off.lock_secs(1000), None);
}

// ---- audit events ----

mod audit {
    use super::*;
    use crate::store::{AuditEvent, AuditFilter, AuditKind};

    async fn events(h: &Harness, kind: AuditKind) -> Vec<AuditEvent> {
        let filter = AuditFilter {
            kind: Some(kind),
            limit: 100,
            ..AuditFilter::default()
        };
        h.stores.audit.list_audit(&filter).await.unwrap()
    }

    /// Every event's detail, none of which may contain `secret`.
    async fn assert_nowhere(h: &Harness, secret: &str) {
        let filter = AuditFilter {
            limit: 1000,
            ..AuditFilter::default()
        };
        for e in h.stores.audit.list_audit(&filter).await.unwrap() {
            assert!(!e.detail.contains(secret), "{e:?} holds a secret");
            assert_ne!(e.subject.as_deref(), Some(secret));
        }
    }

    #[tokio::test]
    async fn a_login_records_its_success_and_the_tokens_issued_without_the_tokens() {
        let (h, tokens) = logged_in(opaque_policy()).await;
        let alice = tokens.subject.clone();

        let logins = events(&h, AuditKind::LoginSuccess).await;
        assert_eq!(logins.len(), 1);
        assert_eq!(logins[0].subject.as_deref(), Some(alice.as_str()));
        assert_eq!(logins[0].client_id.as_deref(), Some("app"));
        let issued = events(&h, AuditKind::TokenIssued).await;
        assert_eq!(issued.len(), 1);
        let detail: serde_json::Value = serde_json::from_str(&issued[0].detail).unwrap();
        assert_eq!(detail["grant"], "password");
        let access_ref = crate::audit::token_ref(&tokens.access_token);
        assert_eq!(detail["access"], access_ref.as_str());
        assert_nowhere(&h, &tokens.access_token).await;
        assert_nowhere(&h, refresh_token(&tokens)).await;
        assert_nowhere(&h, PASSWORD).await;
    }

    #[tokio::test]
    async fn a_jwt_issuance_is_named_by_its_jti_and_a_refresh_by_its_hash_prefix() {
        let h = Harness::new().await;
        h.confidential_client(client("service")).await;
        let tokens = h
            .client_credentials(basic("service", CLIENT_SECRET))
            .await
            .unwrap();

        let issued = events(&h, AuditKind::TokenIssued).await;
        let detail: serde_json::Value = serde_json::from_str(&issued[0].detail).unwrap();
        let payload = tokens.access_token.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(detail["access_jti"], claims["jti"]);
        assert!(detail["access"].is_null(), "a JWT has no stored hash");
        assert!(detail["refresh"].is_null());

        let (h, tokens) = logged_in(opaque_policy()).await;
        let issued = events(&h, AuditKind::TokenIssued).await;
        let detail: serde_json::Value = serde_json::from_str(&issued[0].detail).unwrap();
        let refresh_ref = crate::audit::token_ref(refresh_token(&tokens));
        assert_eq!(detail["refresh"], refresh_ref.as_str());
        assert!(detail["access_jti"].is_null());
    }

    #[tokio::test]
    async fn a_wrong_password_records_a_failure_for_the_username_tried() {
        let h = Harness::new().await;
        h.public_client(client("app")).await;
        h.user("alice", None).await;

        let request = password_request(id_only("app"), "alice", "wrong password");
        h.engine.tokens().token(&request).await.unwrap_err();
        let request = password_request(id_only("app"), "mallory", "wrong password");
        h.engine.tokens().token(&request).await.unwrap_err();

        let failures = events(&h, AuditKind::LoginFailure).await;
        let subjects: Vec<_> = failures.iter().map(|e| e.subject.as_deref()).collect();
        assert_eq!(subjects, [Some("mallory"), Some("alice")]);
        assert!(events(&h, AuditKind::TokenIssued).await.is_empty());
        assert_nowhere(&h, "wrong password").await;
    }

    #[tokio::test]
    async fn reuse_outside_the_window_records_the_reuse_and_the_family_revocation() {
        let (h, tokens) = logged_in(TokenPolicy {
            reuse_window: 0,
            ..TokenPolicy::default()
        })
        .await;
        h.refresh("app", refresh_token(&tokens)).await.unwrap();
        h.refresh("app", refresh_token(&tokens)).await.unwrap_err();

        let reuse = events(&h, AuditKind::RefreshReuse).await;
        assert_eq!(reuse.len(), 1);
        assert_eq!(reuse[0].subject.as_deref(), Some(tokens.subject.as_str()));
        assert_eq!(reuse[0].client_id.as_deref(), Some("app"));
        assert_eq!(events(&h, AuditKind::FamilyRevoked).await.len(), 1);
    }

    #[tokio::test]
    async fn the_login_form_records_success_and_failure_for_its_client() {
        let h = Harness::new().await;
        let alice = h.user("alice", None).await;
        let form = |password: &'static str| {
            let engine = h.engine.clone();
            async move {
                engine
                    .authorization()
                    .sign_in_for(Some("web"), "alice", &secret(password))
                    .await
                    .unwrap()
            }
        };
        assert!(form(PASSWORD).await.is_some());
        assert!(form("not it").await.is_none());

        let ok = &events(&h, AuditKind::LoginSuccess).await[0];
        assert_eq!(ok.subject.as_deref(), Some(alice.id.as_str()));
        assert_eq!(ok.client_id.as_deref(), Some("web"));
        let failed = &events(&h, AuditKind::LoginFailure).await[0];
        assert_eq!(failed.subject.as_deref(), Some("alice"));
        assert_eq!(failed.client_id.as_deref(), Some("web"));
    }

    #[tokio::test]
    async fn revocation_and_key_rotation_are_recorded() {
        let (h, tokens) = logged_in(TokenPolicy::default()).await;
        h.engine
            .tokens()
            .revoke(&id_only("app"), refresh_token(&tokens), None)
            .await
            .unwrap();
        h.engine
            .tokens()
            .revoke(&id_only("app"), &tokens.access_token, None)
            .await
            .unwrap();
        let revoked = events(&h, AuditKind::Revocation).await;
        assert_eq!(revoked.len(), 2, "{revoked:?}");
        assert!(
            revoked
                .iter()
                .all(|e| e.client_id.as_deref() == Some("app"))
        );

        h.engine
            .admin()
            .rotate_signing_key(KeyRotation::DangerImmediate)
            .await
            .unwrap();
        assert_eq!(events(&h, AuditKind::KeyRotation).await.len(), 1);
    }
}

// ---- stored-token keys ----

#[tokio::test]
async fn opaque_tokens_are_stored_under_a_key_that_starts_with_their_issue_time() {
    let (h, tokens) = logged_in(opaque_policy()).await;
    let millis = h.clock.now_millis();
    for token in [tokens.access_token.as_str(), refresh_token(&tokens)] {
        let prefix = URL_SAFE_NO_PAD.decode(token).unwrap()[..6].to_vec();
        assert_eq!(prefix, millis.to_be_bytes()[2..], "{token:?}");
        let key = stored_token_key(token);
        assert!(key.starts_with(&format!("{millis:012x}")));
        assert!(key.ends_with(&token_hash(token)));
    }
    let (key, plain) = (
        stored_token_key(&tokens.access_token),
        token_hash(&tokens.access_token),
    );
    assert!(h.stores.tokens.find_access(&key).await.unwrap().is_some());
    let under_plain = h.stores.tokens.find_access(&plain).await.unwrap();
    assert!(under_plain.is_none(), "not under the plain hash");
}

/// Opaque tokens an earlier khoa stored under their plain SHA-256 keep working until they
/// expire: redeemed, validated and revoked as before.
#[tokio::test]
async fn tokens_an_earlier_khoa_stored_under_their_plain_hash_still_work() {
    let h = Harness::new().await;
    h.public_client(with_policy("app", opaque_policy())).await;
    let alice = h.user("alice", None).await;
    let (old_access, old_refresh) = (generate_token(&OsRandom), generate_token(&OsRandom));
    let family = Family {
        id: "fam-before-the-upgrade".into(),
        client_id: "app".into(),
        subject: alice.id.clone(),
        scope: scopes("offline_access read"),
        created_at: START,
        session_expires_at: START + 86_400,
        revoked_at: None,
    };
    let issuance = Issuance {
        refresh: Some(RefreshRecord {
            hash: token_hash(&old_refresh),
            family_id: family.id.clone(),
            issued_at: START,
            expires_at: START + 3_600,
        }),
        access: Some(AccessRecord {
            hash: token_hash(&old_access),
            client_id: "app".into(),
            subject: alice.id.clone(),
            scope: scopes("offline_access read"),
            family_id: Some(family.id.clone()),
            issued_at: START,
            expires_at: START + 300,
            otp_hash: None,
        }),
        family: Some(family),
    };
    h.stores.tokens.issue(&issuance).await.unwrap();

    assert_eq!(h.validate(&old_access).await.unwrap().subject, alice.id);
    let rotated = h.refresh("app", &old_refresh).await.unwrap();
    let successor = refresh_token(&rotated);
    assert_ne!(
        stored_token_key(successor),
        token_hash(successor),
        "new ones are time-keyed"
    );
    assert!(h.refresh("app", successor).await.is_ok());

    h.engine
        .tokens()
        .revoke(&id_only("app"), &old_access, None)
        .await
        .unwrap();
    assert_eq!(
        h.validate(&old_access).await,
        Err(BearerError::Invalid("unknown token"))
    );
}
