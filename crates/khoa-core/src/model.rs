//! The records the engine reasons about: users (resource owners), clients and their token
//! policy. Plain data; persistence lives behind the traits in [`crate::store`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::scope::ScopeSet;

/// Seconds since the Unix epoch. Every timestamp in the engine and the stores is one of these.
pub type UnixTime = i64;

/// A resource owner who signs in with a username and a password (RFC 6749 §4.3).
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Stable identifier, used as the `sub` of tokens issued to this user.
    pub id: String,
    pub username: String,
    /// Argon2id PHC string. Never the password itself.
    pub password_hash: String,
    pub disabled: bool,
    /// Scopes this user may be granted; `None` means the client's allowed scopes decide alone.
    pub allowed_scopes: Option<ScopeSet>,
    pub created_at: UnixTime,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("disabled", &self.disabled)
            .field("allowed_scopes", &self.allowed_scopes)
            .finish_non_exhaustive()
    }
}

/// The grants khoa implements. Dispatch is on this enum, never on strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// RFC 6749 §4.1 with RFC 7636 PKCE (S256 only).
    AuthorizationCode,
    Password,
    ClientCredentials,
    RefreshToken,
}

impl GrantType {
    pub const ALL: [GrantType; 4] = [
        GrantType::AuthorizationCode,
        GrantType::Password,
        GrantType::ClientCredentials,
        GrantType::RefreshToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::Password => "password",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
        }
    }
}

impl FromStr for GrantType {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GrantType::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no known variant of an enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value `{0}`")]
pub struct UnknownValue(pub String);

/// What an access token looks like on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AccessTokenFormat {
    /// RFC 9068 JWT, verifiable offline against the JWKS.
    #[default]
    Jwt,
    /// 43 base64url characters: the issue millisecond (6 bytes) and 208 random bits; only a
    /// SHA-256 hash is stored (after the issue time, so keys sort by it); validated by lookup.
    Opaque,
    /// 40 lowercase hex characters (160 random bits), the bank-hub shape (seed 001). Stored
    /// and validated like `Opaque`.
    Hex40,
    /// `ACCOUNT||KEYID||<random>`, the derivative-broker shape (seed 000): the account is the
    /// username, the key id names the session. Stored and validated like `Opaque`.
    Account,
}

impl AccessTokenFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessTokenFormat::Jwt => "jwt",
            AccessTokenFormat::Opaque => "opaque",
            AccessTokenFormat::Hex40 => "hex40",
            AccessTokenFormat::Account => "account",
        }
    }
}

impl FromStr for AccessTokenFormat {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jwt" => Ok(Self::Jwt),
            "opaque" => Ok(Self::Opaque),
            "hex40" => Ok(Self::Hex40),
            "account" => Ok(Self::Account),
            other => Err(UnknownValue(other.to_owned())),
        }
    }
}

/// What a refresh token looks like on the wire. Whatever the shape, only its SHA-256 hash is
/// stored and rotation works the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RefreshTokenFormat {
    /// 256 random bits, base64url (seed 004's shape).
    #[default]
    Opaque,
    /// A signed JWT (`typ: rt+jwt`) with `exp` readable by the client (seed 002 calls it a
    /// "JWT Refresh Token"). Never accepted as an access token.
    Jwt,
    /// `ACCOUNT||KEYID||<random>` (seed 000).
    Account,
}

impl RefreshTokenFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshTokenFormat::Opaque => "opaque",
            RefreshTokenFormat::Jwt => "jwt",
            RefreshTokenFormat::Account => "account",
        }
    }
}

impl FromStr for RefreshTokenFormat {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "opaque" => Ok(Self::Opaque),
            "jwt" => Ok(Self::Jwt),
            "account" => Ok(Self::Account),
            other => Err(UnknownValue(other.to_owned())),
        }
    }
}

/// When a refresh token is issued alongside an access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RefreshIssuance {
    /// Only when the granted scopes include `offline_access` (the OpenID Connect convention
    /// seed 004 follows).
    #[default]
    OfflineAccess,
    /// For every user-facing grant.
    Always,
    Never,
}

impl RefreshIssuance {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshIssuance::OfflineAccess => "offline_access",
            RefreshIssuance::Always => "always",
            RefreshIssuance::Never => "never",
        }
    }
}

impl FromStr for RefreshIssuance {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "offline_access" => Ok(Self::OfflineAccess),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => Err(UnknownValue(other.to_owned())),
        }
    }
}

/// Per-client token policy. All durations are in seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPolicy {
    pub access_format: AccessTokenFormat,
    pub access_ttl: i64,
    pub refresh: RefreshIssuance,
    /// Lifetime of each refresh token from the moment it is issued (sliding).
    pub refresh_ttl: i64,
    /// Absolute lifetime of a refresh-token family: no rotation extends a session past it.
    pub session_lifetime: i64,
    /// How long after a refresh token was redeemed a repeated redemption still gets the same
    /// successor instead of revoking the family. 0 disables the grace.
    pub reuse_window: i64,
    pub refresh_format: RefreshTokenFormat,
    /// Issue an `otp_token` bound to each access token, which mutating requests must present
    /// beside the bearer token (seed 000's order APIs).
    pub otp: bool,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            access_format: AccessTokenFormat::Jwt,
            access_ttl: 3600,
            refresh: RefreshIssuance::OfflineAccess,
            refresh_ttl: 14 * 24 * 3600,
            session_lifetime: 90 * 24 * 3600,
            reuse_window: 5,
            refresh_format: RefreshTokenFormat::Opaque,
            otp: false,
        }
    }
}

/// An OAuth 2.0 client (RFC 6749 §2).
#[derive(Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// Keyed hash of the client secret ([`crate::secret::SecretHasher`]); `None` for a public
    /// client, which authenticates by `client_id` alone.
    pub secret_hash: Option<String>,
    pub allowed_scopes: ScopeSet,
    /// Granted when a request names no scope.
    pub default_scopes: ScopeSet,
    pub grant_types: Vec<GrantType>,
    /// RFC 6749 §3.1.2: where the authorization endpoint may send the user back. Compared
    /// byte for byte with the request's `redirect_uri` (RFC 9700 §4.1.3: no pattern matching).
    pub redirect_uris: Vec<String>,
    pub policy: TokenPolicy,
    pub disabled: bool,
    pub created_at: UnixTime,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }

    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("public", &self.is_public())
            .field("allowed_scopes", &self.allowed_scopes)
            .field("default_scopes", &self.default_scopes)
            .field("grant_types", &self.grant_types)
            .field("redirect_uris", &self.redirect_uris)
            .field("policy", &self.policy)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_types_round_trip_through_their_wire_names() {
        for g in GrantType::ALL {
            assert_eq!(g.as_str().parse::<GrantType>().unwrap(), g);
        }
        assert!("implicit".parse::<GrantType>().is_err());
    }

    #[test]
    fn policy_enums_reject_unknown_names() {
        assert_eq!("opaque".parse(), Ok(AccessTokenFormat::Opaque));
        assert!("JWT".parse::<AccessTokenFormat>().is_err());
        assert_eq!("never".parse(), Ok(RefreshIssuance::Never));
        assert!("sometimes".parse::<RefreshIssuance>().is_err());
    }
}
