//! The engine: four services split by purpose, built once over the stores and handed out by a
//! thin [`Engine`] facade. Every dialect and CLI verb calls a service; none of them knows how a
//! token is made, and none of them reaches a store.
//!
//! - [`Tokens`]: the token endpoint (client authentication, grant dispatch), bearer
//!   validation, revocation, introspection, the JWT revocation list, userinfo.
//! - [`Authorization`]: the authorization endpoint's checks, the login form's sign-in and CSRF
//!   guard, authorization codes.
//! - [`Administration`]: clients, users, partners, signing and client keys, the audit trail's
//!   reading — each change recorded as an `admin` audit event, so the CLI and any future admin
//!   API record the same ones.
//! - [`Maintenance`]: the periodic work of every node (key reloads, purges) and readiness.
//!
//! Each service holds only the stores it uses ([`Engine::new`] hands them out): what a
//! service can touch is in its fields.

mod admin;
mod authorization;
mod maintenance;
mod tokens;

pub use admin::{Administration, MIN_CLIENT_SECRET_LEN, NewClientKey, Unlocked};
pub use authorization::Authorization;
pub use maintenance::Maintenance;
pub use tokens::{BearerError, Principal, Tokens};

use std::sync::Arc;

use crate::audit::Auditor;
use crate::authorize::CsrfGuard;
use crate::client_cache::ClientCache;
use crate::client_key::ClientKeys;
use crate::clock::{Clock, Random};
use crate::error::EngineError;
use crate::grant::authorization_code::AuthorizationCodeGrant;
use crate::grant::client_credentials::ClientCredentialsGrant;
use crate::grant::password::PasswordGrant;
use crate::grant::refresh_token::RefreshTokenGrant;
use crate::master_key::MasterKey;
use crate::mint::{KeyRingHandle, Minter};
use crate::model::UnixTime;
use crate::partner::Partners;
use crate::password::{PasswordHasher, PasswordParams};
use crate::revocation::RevocationList;
use crate::secret::SecretHasher;
use crate::store::{LockoutPolicy, Stores};

/// Settings the engine needs; the server fills them from its typed config.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `iss` of every token and the base of discovery documents.
    pub issuer: String,
    /// `aud` of JWT access tokens: the resource servers they are meant for.
    pub audience: String,
    pub password: PasswordParams,
    /// Argon2 computations allowed at once (each holds `password.memory_kib`).
    pub password_concurrency: usize,
    /// Logins allowed to wait for a hash slot; more are refused with 503 at once.
    pub password_queue: usize,
    /// Seconds a client record is cached ([`ClientCache`]); 0 disables the cache.
    pub client_cache_secs: i64,
    /// Seconds an authorization code stays redeemable. RFC 6749 §4.1.2 recommends at most ten
    /// minutes; the code only has to survive one redirect, so khoa defaults to 60.
    pub auth_code_ttl: i64,
    /// When failed sign-ins lock an account.
    pub lockout: LockoutPolicy,
    /// Names this node in audit events (several nodes may share one database).
    pub node: Option<String>,
    /// Who runs this process's administrative changes, as the operating system says (`USER`):
    /// a hint in `admin` audit events, not an authentication.
    pub operator: Option<String>,
}

pub struct Engine {
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    passwords: PasswordHasher,
    tokens: Tokens,
    authorization: Authorization,
    admin: Administration,
    maintenance: Maintenance,
}

impl Engine {
    /// Builds the services over `stores`, creating the first signing key if there is none.
    pub async fn new(
        config: EngineConfig,
        stores: Stores,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Result<Self, EngineError> {
        let Stores {
            client_keys: client_key_store,
            users,
            clients: client_store,
            tokens,
            keys: key_store,
            partners: partner_store,
            codes,
            login_failures,
            audit: audit_store,
            readiness,
        } = stores;
        let secrets = SecretHasher::new(master.derive("khoa client secret pepper v1"));
        let csrf = CsrfGuard::new(master.derive("khoa authorize csrf v1"));
        let passwords = PasswordHasher::new(
            config.password,
            config.password_concurrency,
            config.password_queue,
        )?;
        let audit = Auditor::new(audit_store.clone(), config.node.clone());
        let clients = Arc::new(ClientCache::new(
            client_store.clone(),
            config.client_cache_secs,
        ));
        let partners = Partners {
            store: partner_store,
            clients: client_store.clone(),
            master: master.clone(),
            clock: clock.clone(),
            random: random.clone(),
        };
        let client_keys = ClientKeys {
            store: client_key_store,
            clients: client_store.clone(),
            master: master.clone(),
            clock: clock.clone(),
            random: random.clone(),
        };
        let keys =
            Arc::new(KeyRingHandle::open(key_store.clone(), master, &*random, clock.now()).await?);
        let minter = Arc::new(Minter {
            tokens: tokens.clone(),
            keys: keys.clone(),
            clock: clock.clone(),
            random: random.clone(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        });
        let password_grant = Arc::new(PasswordGrant {
            users: users.clone(),
            passwords: passwords.clone(),
            minter: minter.clone(),
            failures: login_failures.clone(),
            lockout: config.lockout,
            clock: clock.clone(),
            audit: audit.clone(),
        });
        let token_service = Tokens {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            clock: clock.clone(),
            secrets: secrets.clone(),
            clients: clients.clone(),
            keys: keys.clone(),
            revocations: RevocationList::new(tokens.clone()),
            tokens: tokens.clone(),
            users: users.clone(),
            partners: partners.clone(),
            client_keys: client_keys.clone(),
            password_grant: password_grant.clone(),
            client_credentials_grant: ClientCredentialsGrant {
                minter: minter.clone(),
            },
            refresh_grant: RefreshTokenGrant {
                tokens: tokens.clone(),
                users: users.clone(),
                minter: minter.clone(),
                audit: audit.clone(),
            },
            code_grant: AuthorizationCodeGrant {
                codes: codes.clone(),
                tokens: tokens.clone(),
                users: users.clone(),
                minter,
                audit: audit.clone(),
            },
            audit: audit.clone(),
        };
        let authorization = Authorization {
            clock: clock.clone(),
            random: random.clone(),
            clients: clients.clone(),
            password_grant,
            codes,
            auth_code_ttl: config.auth_code_ttl,
            csrf,
            audit: audit.clone(),
        };
        let admin = Administration {
            clock: clock.clone(),
            random,
            secrets,
            passwords: passwords.clone(),
            clients,
            client_store,
            users,
            login_failures: login_failures.clone(),
            keys: keys.clone(),
            key_store: key_store.clone(),
            partners,
            client_keys,
            audit: audit.clone(),
            audit_store: audit_store.clone(),
            operator: config.operator.clone(),
        };
        let maintenance = Maintenance {
            keys,
            key_store,
            tokens,
            login_failures,
            audit: audit_store,
            readiness,
            auditor: audit,
        };
        Ok(Engine {
            config,
            clock,
            passwords,
            tokens: token_service,
            authorization,
            admin,
            maintenance,
        })
    }

    /// Tokens: issuance, validation, revocation, introspection.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The authorization endpoint and its login form.
    pub fn authorization(&self) -> &Authorization {
        &self.authorization
    }

    /// Clients, users, partners, keys and the audit trail, for the CLI and the demo.
    pub fn admin(&self) -> &Administration {
        &self.admin
    }

    /// Key reloads, purges and readiness, for the node's periodic task and probes.
    pub fn maintenance(&self) -> &Maintenance {
        &self.maintenance
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The Argon2id pool every password check and hash shares (the password grant, the login
    /// form, `khoa user add`): its shed count is a metric, its verifications a test's probe.
    pub fn passwords(&self) -> &PasswordHasher {
        &self.passwords
    }
}
