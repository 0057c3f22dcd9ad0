//! Every way a token request can be refused, by the edge or by the engine: the keys of a
//! definition's `[errors.cases]`.
//!
//! A definition need not spell out every kind: a kind without a case of its own is answered with
//! its parent's case (a `missing_field` like a `malformed` request, a `locked` account like any
//! `invalid_grant`), up to one of the two roots every definition must have, `malformed` and
//! `server_error`. Only the HTTP status does not travel: a kind answered by a parent's case keeps
//! its own [`Kind::status`], so a 405 stays a 405 in whatever body the parent gives it.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The request cannot be read as the endpoint takes it (a root).
    Malformed,
    /// A required input is absent (`{field}` names it).
    MissingField,
    /// An input holds something other than a non-empty string (`{field}` names it).
    InvalidField,
    /// An input that must hold a fixed value holds another (`{field}` names it).
    WrongValue,
    /// A credential header is sent twice (`{header}` names it).
    RepeatedHeader,
    /// 413: the body is over `http.max_body_bytes`.
    TooLarge,
    /// 405: the endpoint takes another method.
    MethodNotAllowed,
    /// 408: the request did not arrive in time.
    Timeout,
    /// 431: the request head is too large.
    HeadersTooLarge,
    /// No credentials where the endpoint reads them (no `Authorization: Basic`, no key header).
    MissingCredentials,
    /// The client is unknown or its authentication failed.
    InvalidClient,
    /// `invalid_client` for a request that authenticated with HTTP Basic, which RFC 6749 §5.2
    /// answers with a `WWW-Authenticate` challenge.
    InvalidClientBasic,
    /// The bearer token of a `resource` endpoint is missing, unknown, revoked or expired.
    InvalidToken,
    /// The grant's credentials (password, refresh token) are refused.
    InvalidGrant,
    /// The account is locked after failed sign-ins (`Retry-After` says until when).
    Locked,
    /// The account is disabled.
    Disabled,
    /// The engine refused the request itself (RFC 6749 `invalid_request`).
    InvalidRequest,
    /// The scope asked for is not the client's.
    InvalidScope,
    /// The client may not use this grant.
    UnauthorizedClient,
    /// Any other refusal of the engine (`{error}` is its RFC 6749 code).
    OauthError,
    /// An envelope did not open (unknown key, bad ciphertext): one answer for every cause.
    Envelope,
    /// A request signature that does not verify with any key of the client (or no key).
    BadSignature,
    /// A signing time outside the freshness window.
    StaleSignature,
    /// A signature already accepted once.
    ReplayedSignature,
    /// 429: over a rate limit (`Retry-After` says when to come back).
    RateLimited,
    /// 503: the database cannot be reached; retry shortly.
    Unavailable,
    /// 500: khoa's fault (a root).
    ServerError,
}

impl Kind {
    pub const ALL: [Kind; 27] = [
        Kind::Malformed,
        Kind::MissingField,
        Kind::InvalidField,
        Kind::WrongValue,
        Kind::RepeatedHeader,
        Kind::TooLarge,
        Kind::MethodNotAllowed,
        Kind::Timeout,
        Kind::HeadersTooLarge,
        Kind::MissingCredentials,
        Kind::InvalidClient,
        Kind::InvalidClientBasic,
        Kind::InvalidToken,
        Kind::InvalidGrant,
        Kind::Locked,
        Kind::Disabled,
        Kind::InvalidRequest,
        Kind::InvalidScope,
        Kind::UnauthorizedClient,
        Kind::OauthError,
        Kind::Envelope,
        Kind::BadSignature,
        Kind::StaleSignature,
        Kind::ReplayedSignature,
        Kind::RateLimited,
        Kind::Unavailable,
        Kind::ServerError,
    ];

    /// The case a kind without one of its own is answered with; `None` for the two roots.
    pub fn parent(self) -> Option<Kind> {
        use Kind::*;
        Some(match self {
            Malformed | ServerError => return None,
            MissingField | WrongValue | RepeatedHeader | TooLarge | MethodNotAllowed | Timeout
            | HeadersTooLarge => Malformed,
            InvalidField => MissingField,
            Locked | Disabled => InvalidGrant,
            MissingCredentials | InvalidClientBasic | InvalidToken | Envelope | BadSignature
            | StaleSignature | ReplayedSignature => InvalidClient,
            InvalidClient | InvalidGrant | InvalidRequest | InvalidScope | UnauthorizedClient => {
                OauthError
            }
            OauthError => Malformed,
            RateLimited | Unavailable => ServerError,
        })
    }

    /// The HTTP status of this kind when its case does not set one.
    pub fn status(self) -> u16 {
        use Kind::*;
        match self {
            Malformed | MissingField | InvalidField | WrongValue | RepeatedHeader
            | InvalidGrant | Locked | Disabled | InvalidRequest | InvalidScope
            | UnauthorizedClient | OauthError => 400,
            TooLarge => 413,
            MethodNotAllowed => 405,
            Timeout => 408,
            HeadersTooLarge => 431,
            MissingCredentials | InvalidClient | InvalidClientBasic | InvalidToken | Envelope
            | BadSignature | StaleSignature | ReplayedSignature => 401,
            RateLimited => 429,
            Unavailable => 503,
            ServerError => 500,
        }
    }

    /// The RFC 6749 §5.2 code that `{error}` holds unless the engine gave one.
    pub fn oauth_code(self) -> &'static str {
        use Kind::*;
        match self {
            MissingCredentials | InvalidClient | InvalidClientBasic | Envelope | BadSignature
            | StaleSignature | ReplayedSignature => "invalid_client",
            InvalidToken => "invalid_token",
            InvalidGrant | Locked | Disabled => "invalid_grant",
            InvalidScope => "invalid_scope",
            UnauthorizedClient => "unauthorized_client",
            RateLimited => "rate_limited",
            Unavailable => "temporarily_unavailable",
            ServerError => "server_error",
            _ => "invalid_request",
        }
    }

    pub fn as_str(self) -> &'static str {
        use Kind::*;
        match self {
            Malformed => "malformed",
            MissingField => "missing_field",
            InvalidField => "invalid_field",
            WrongValue => "wrong_value",
            RepeatedHeader => "repeated_header",
            TooLarge => "too_large",
            MethodNotAllowed => "method_not_allowed",
            Timeout => "timeout",
            HeadersTooLarge => "headers_too_large",
            MissingCredentials => "missing_credentials",
            InvalidClient => "invalid_client",
            InvalidClientBasic => "invalid_client_basic",
            InvalidToken => "invalid_token",
            InvalidGrant => "invalid_grant",
            Locked => "locked",
            Disabled => "disabled",
            InvalidRequest => "invalid_request",
            InvalidScope => "invalid_scope",
            UnauthorizedClient => "unauthorized_client",
            OauthError => "oauth_error",
            Envelope => "envelope",
            BadSignature => "bad_signature",
            StaleSignature => "stale_signature",
            ReplayedSignature => "replayed_signature",
            RateLimited => "rate_limited",
            Unavailable => "unavailable",
            ServerError => "server_error",
        }
    }
}

/// One refusal, with what its message may name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub kind: Kind,
    /// English text of the cause, `{description}` in templates.
    pub description: String,
    /// The input at fault (`{field}`), as the request names it.
    pub field: Option<String>,
    /// The header at fault (`{header}`).
    pub header: Option<String>,
    /// The engine's RFC 6749 code (`{error}`), when the engine refused.
    pub error: Option<&'static str>,
    /// Seconds until a retry can succeed: sent as `Retry-After` and `{retry_after}`.
    pub retry_after: Option<u64>,
}

impl Refused {
    pub fn new(kind: Kind, description: impl Into<String>) -> Self {
        Refused {
            kind,
            description: description.into(),
            field: None,
            header: None,
            error: None,
            retry_after: None,
        }
    }

    pub fn field(kind: Kind, field: &str) -> Self {
        let description = match kind {
            Kind::WrongValue => format!("{field} does not hold the value this endpoint takes"),
            _ => format!("missing required field: {field}"),
        };
        Refused {
            field: Some(field.to_owned()),
            ..Refused::new(kind, description)
        }
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reaches_a_root() {
        for k in Kind::ALL {
            let mut at = k;
            let mut steps = 0;
            while let Some(p) = at.parent() {
                at = p;
                steps += 1;
                assert!(steps < 8, "{k:?} loops");
            }
            assert!(matches!(at, Kind::Malformed | Kind::ServerError), "{k:?}");
        }
    }

    #[test]
    fn names_round_trip_through_serde() {
        for k in Kind::ALL {
            let s = serde_json::to_value(k).unwrap();
            assert_eq!(s, k.as_str());
        }
    }
}
