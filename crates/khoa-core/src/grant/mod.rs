//! The grants, one module each, behind [`GrantHandler`] and dispatched on
//! [`crate::model::GrantType`] by the engine.

pub mod authorization_code;
pub mod client_credentials;
pub mod password;
pub mod refresh_token;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::error::{EngineError, OAuthError};
use crate::mint::IssuedTokens;
use crate::model::{Client, RefreshIssuance};
use crate::scope::{OFFLINE_ACCESS, ScopeSet};

/// How the client presented itself (RFC 6749 §2.3).
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// No client identification at all.
    None,
    /// `client_secret_basic`: `Authorization: Basic`.
    Basic {
        client_id: String,
        secret: SecretString,
    },
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    Post {
        client_id: String,
        secret: SecretString,
    },
    /// `client_id` alone, as a public client sends it (seed 004).
    IdOnly { client_id: String },
    /// Vouched for by the dialect adapter, which verified a credential bound to this client
    /// (seed 002: a payload that opened under the partner's AES key). No wire parser produces
    /// this variant from client input.
    Attested { client_id: String },
}

impl ClientAuth {
    /// The client the request names, authenticated or not (rate limits key on it).
    pub fn client_id(&self) -> Option<&str> {
        match self {
            ClientAuth::None => None,
            ClientAuth::Basic { client_id, .. }
            | ClientAuth::Post { client_id, .. }
            | ClientAuth::IdOnly { client_id }
            | ClientAuth::Attested { client_id } => Some(client_id),
        }
    }

    pub fn used_basic(&self) -> bool {
        matches!(self, ClientAuth::Basic { .. })
    }
}

/// A token request already parsed from its wire form by a dialect adapter.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client: ClientAuth,
    pub scope: Option<String>,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
    /// RFC 6749 §4.1.3, RFC 7636 §4.5: the authorization code grant's three parameters.
    pub code: Option<SecretString>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<SecretString>,
}

impl TokenRequest {
    pub fn new(grant_type: &str, client: ClientAuth) -> Self {
        TokenRequest {
            grant_type: Some(grant_type.to_owned()),
            client,
            scope: None,
            username: None,
            password: None,
            refresh_token: None,
            code: None,
            redirect_uri: None,
            code_verifier: None,
        }
    }
}

/// One grant: given an authenticated client allowed to use it, decide and mint.
#[async_trait]
pub trait GrantHandler: Send + Sync {
    async fn handle(
        &self,
        client: &Client,
        request: &TokenRequest,
    ) -> Result<IssuedTokens, EngineError>;
}

/// RFC 6749 §3.3: no scope requested → the client's defaults; otherwise the request must be a
/// subset of what the client (and, when restricted, the user) may have.
pub(crate) fn resolve_scope(
    requested: Option<&str>,
    client: &Client,
    user_allowed: Option<&ScopeSet>,
) -> Result<ScopeSet, OAuthError> {
    let requested = requested
        .map(ScopeSet::parse)
        .transpose()
        .map_err(|_| OAuthError::invalid_scope("the scope parameter is malformed"))?
        .filter(|s| !s.is_empty());
    let within_user = |s: &ScopeSet| user_allowed.is_none_or(|u| s.is_subset(u));
    match requested {
        Some(s) if s.is_subset(&client.allowed_scopes) && within_user(&s) => Ok(s),
        Some(_) => Err(OAuthError::invalid_scope(
            "the requested scope exceeds what this client may be granted",
        )),
        None => Ok(match user_allowed {
            Some(u) => client
                .default_scopes
                .iter()
                .filter(|s| u.contains(s))
                .collect(),
            None => client.default_scopes.clone(),
        }),
    }
}

/// Whether a user-facing grant with `scope` also gets a refresh token under the client policy.
pub(crate) fn wants_refresh(client: &Client, scope: &ScopeSet) -> bool {
    let policy_says = match client.policy.refresh {
        RefreshIssuance::OfflineAccess => scope.contains(OFFLINE_ACCESS),
        RefreshIssuance::Always => true,
        RefreshIssuance::Never => false,
    };
    policy_says && client.allows_grant(crate::model::GrantType::RefreshToken)
}

pub(crate) fn required<'a, T>(value: &'a Option<T>, name: &str) -> Result<&'a T, OAuthError> {
    value
        .as_ref()
        .ok_or_else(|| OAuthError::invalid_request(format!("the {name} parameter is required")))
}
