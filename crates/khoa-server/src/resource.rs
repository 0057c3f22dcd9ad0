//! The resource-server side: an extractor that demands a valid bearer token (RFC 6750) and the
//! sample protected resource of seed 004's usage example.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use khoa_core::engine::{BearerError, Principal};

use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{Authorization, parse_authorization, single_header};

pub const PROTECTED_RESOURCE_PATH: &str = "/api/protected-resource";

/// A request whose bearer token khoa validated.
pub struct Authenticated(pub Principal);

/// RFC 6750 §3: 401 with a `WWW-Authenticate: Bearer` challenge.
pub struct BearerRejection {
    description: &'static str,
    unavailable: Option<String>,
    /// No `Authorization` header at all: RFC 6750 §3.1 says such a challenge carries no
    /// error code (forward auth follows it; this resource keeps its established answer).
    absent: bool,
    /// Two `Authorization` fields: RFC 6750 §3.1 `invalid_request` ("repeats the same
    /// parameter"), 400.
    repeated: bool,
}

impl IntoResponse for BearerRejection {
    fn into_response(self) -> Response {
        if let Some(detail) = self.unavailable {
            return ApiError::Unavailable(detail).into_response();
        }
        let (status, error) = if self.repeated {
            (StatusCode::BAD_REQUEST, "invalid_request")
        } else {
            (StatusCode::UNAUTHORIZED, "invalid_token")
        };
        let challenge = format!(
            "Bearer realm=\"khoa\", error=\"{error}\", error_description=\"{}\"",
            self.description
        );
        let body = serde_json::json!({
            "error": error,
            "error_description": self.description,
        });
        let mut res = (status, axum::Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res
    }
}

/// Validates the request's bearer token: the one check every protected route shares, whatever
/// shape its errors take.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Principal, BearerRejection> {
    let reject = |description| BearerRejection {
        description,
        unavailable: None,
        absent: false,
        repeated: false,
    };
    let header =
        single_header(headers, header::AUTHORIZATION.as_str()).map_err(|_| BearerRejection {
            repeated: true,
            ..reject("the Authorization header is repeated")
        })?;
    let token = match parse_authorization(header, false) {
        Authorization::Bearer(t) => t,
        Authorization::Absent => {
            return Err(BearerRejection {
                absent: true,
                ..reject("a bearer token is required")
            });
        }
        _ => return Err(reject("the Authorization header is not a bearer token")),
    };
    match state.engine.tokens().validate_bearer(&token).await {
        Ok(p) => Ok(p),
        Err(BearerError::Invalid(reason)) => {
            tracing::debug!(reason, "bearer token refused");
            Err(reject("the access token is invalid, expired or revoked"))
        }
        Err(BearerError::Unavailable(detail)) => Err(BearerRejection {
            description: "",
            unavailable: Some(detail),
            absent: false,
            repeated: false,
        }),
    }
}

impl BearerRejection {
    /// True when the database, not the token, was the problem (answer 503, not 401).
    pub fn is_unavailable(&self) -> bool {
        self.unavailable.is_some()
    }

    /// True when the request itself is malformed (a repeated `Authorization`): 400, not 401.
    pub fn is_bad_request(&self) -> bool {
        self.repeated
    }

    /// True when the request sent no credentials at all (RFC 6750 §3.1: no error code).
    pub fn is_absent(&self) -> bool {
        self.absent
    }

    /// Why the token was refused, for an `error_description`.
    pub fn description(&self) -> &'static str {
        self.description
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = BearerRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(state, &parts.headers).await.map(Authenticated)
    }
}

/// The header that carries seed 000's second secret on mutating requests.
pub const OTP_HEADER: &str = "x-otp-token";

/// Reads need the bearer token alone; POST/PUT/PATCH/DELETE must also carry the session's
/// `x-otp-token` when the token was issued with one (seed 000's order APIs).
#[allow(
    clippy::result_large_err,
    reason = "the rejection is the finished response, built once per refused request"
)]
pub fn otp_check(method: &Method, headers: &HeaderMap, p: &Principal) -> Result<(), Response> {
    let mutating = matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let Ok(presented) = single_header(headers, OTP_HEADER) else {
        // Two OTP fields: which one a proxy checked is anyone's guess (RFC 6750 §3.1's rule
        // for repeated parameters, applied to the session's second secret).
        let body = serde_json::json!({
            "error": "invalid_request",
            "error_description": "the x-otp-token header is repeated",
        });
        return Err((StatusCode::BAD_REQUEST, axum::Json(body)).into_response());
    };
    let presented = presented.and_then(|v| std::str::from_utf8(v).ok());
    if !mutating || p.otp_satisfied(presented) {
        return Ok(());
    }
    let body = serde_json::json!({
        "error": "otp_required",
        "error_description": "this request must carry the session's x-otp-token",
    });
    Err((StatusCode::FORBIDDEN, axum::Json(body)).into_response())
}

/// `/api/protected-resource` (any method): shows who the token speaks for. Mutating methods
/// also demand the OTP token when the session has one.
pub async fn protected_resource(
    method: Method,
    headers: HeaderMap,
    Authenticated(p): Authenticated,
) -> Response {
    if let Err(refused) = otp_check(&method, &headers, &p) {
        return refused;
    }
    axum::Json(serde_json::json!({
        "message": "access granted",
        "method": method.as_str(),
        "sub": p.subject,
        "client_id": p.client_id,
        "scope": p.scope.to_string(),
        "token_format": p.format.as_str(),
        "expires_at": p.expires_at,
    }))
    .into_response()
}
