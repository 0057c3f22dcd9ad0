//! The authorization endpoint's decisions (RFC 6749 §4.1.1–§4.1.2, RFC 7636 §4.3, RFC 9700
//! §2.1.1), free of HTTP: which requests are valid, which errors may be sent back to the
//! client's `redirect_uri` and which must not, and the CSRF guard of the login form.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::clock::Random;
use crate::error::{ErrorCode, OAuthError};
use crate::model::{Client, GrantType, UnixTime};
use crate::scope::ScopeSet;
use crate::secret::{ct_eq, generate_token};

/// The query (GET) or form (POST) of an authorization request, as received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizeRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    /// OpenID Connect Core §3.1.2.1.
    pub nonce: Option<String>,
}

/// A request that passed every check: what the login form carries and the code records.
#[derive(Clone, Debug)]
pub struct ValidAuthorize {
    pub client: Client,
    pub redirect_uri: String,
    pub scope: ScopeSet,
    pub state: Option<String>,
    pub code_challenge: String,
    pub nonce: Option<String>,
}

/// Why an authorization request was refused, and where the answer may go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorizeError {
    /// RFC 6749 §4.1.2.1: the client or its redirect URI could not be established, so the
    /// user agent MUST NOT be sent anywhere: show the error to the user.
    Page(OAuthError),
    /// Any other problem goes back to the client at its (verified) redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: OAuthError,
    },
}

/// RFC 7636 §4.2: a challenge is 43 base64url characters (a SHA-256); anything else cannot be
/// the `S256` of a verifier.
fn challenge_is_well_formed(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks an authorization request against `client` (looked up by the caller: `None` when
/// unknown or disabled).
pub fn validate(
    request: &AuthorizeRequest,
    client: Option<Client>,
) -> Result<ValidAuthorize, AuthorizeError> {
    let page = |d: &'static str| AuthorizeError::Page(OAuthError::invalid_request(d));
    let Some(client) = client else {
        return Err(AuthorizeError::Page(OAuthError::invalid_client(
            "the client_id is missing or names no active client",
        )));
    };
    // RFC 9700 §2.1: exact string comparison against a registered URI; none is a default.
    let redirect_uri = request
        .redirect_uri
        .clone()
        .ok_or_else(|| page("the redirect_uri parameter is required"))?;
    if !client.redirect_uris.contains(&redirect_uri) {
        return Err(page("the redirect_uri is not registered for this client"));
    }
    let back = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: request.state.clone(),
        error,
    };
    match request.response_type.as_deref() {
        Some("code") => {}
        None => {
            return Err(back(OAuthError::invalid_request(
                "response_type is required",
            )));
        }
        Some(_) => {
            return Err(back(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            )));
        }
    }
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return Err(back(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization code grant",
        )));
    }
    // RFC 9700 §2.1.1: PKCE is required, and `plain` offers no protection once the request
    // leaks: only S256.
    let code_challenge = match (
        request.code_challenge.as_deref(),
        request.code_challenge_method.as_deref(),
    ) {
        (Some(c), Some("S256")) if challenge_is_well_formed(c) => c.to_owned(),
        (None, _) => {
            return Err(back(OAuthError::invalid_request(
                "code_challenge is required (PKCE, RFC 7636)",
            )));
        }
        (Some(_), Some("S256")) => {
            return Err(back(OAuthError::invalid_request(
                "code_challenge is not a base64url SHA-256",
            )));
        }
        (Some(_), _) => {
            return Err(back(OAuthError::invalid_request(
                "code_challenge_method must be S256",
            )));
        }
    };
    let scope =
        crate::grant::resolve_scope(request.scope.as_deref(), &client, None).map_err(&back)?;
    Ok(ValidAuthorize {
        client,
        redirect_uri,
        scope,
        state: request.state.clone(),
        code_challenge,
        nonce: request.nonce.clone(),
    })
}

/// The signed double-submit cookie of the login form (OWASP CSRF cheat sheet): the cookie
/// holds a random value, the form an HMAC of it under a key derived from the master key. A
/// cross-site form can neither read the cookie nor compute the MAC, and SameSite=Lax keeps the
/// cookie off cross-site POSTs besides.
#[derive(Clone)]
pub struct CsrfGuard {
    key: [u8; 32],
}

impl CsrfGuard {
    pub fn new(key: [u8; 32]) -> Self {
        CsrfGuard { key }
    }

    /// A fresh cookie value.
    pub fn new_cookie(&self, random: &dyn Random) -> String {
        generate_token(random)
    }

    /// The form token that goes with `cookie`.
    pub fn form_token(&self, cookie: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(b"khoa authorize csrf\0");
        mac.update(cookie.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Constant-time check that `form_token` was made for `cookie`.
    pub fn verify(&self, cookie: Option<&str>, form_token: Option<&str>) -> bool {
        match (cookie, form_token) {
            (Some(c), Some(t)) if !c.is_empty() => {
                ct_eq(self.form_token(c).as_bytes(), t.as_bytes())
            }
            _ => false,
        }
    }
}

impl std::fmt::Debug for CsrfGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfGuard(..)")
    }
}

/// What a successful sign-in gives the edge: the code for the client's redirect.
#[derive(Clone)]
pub struct IssuedCode {
    pub code: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub expires_at: UnixTime,
}

impl std::fmt::Debug for IssuedCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCode")
            .field("code", &crate::secret::redacted(&self.code))
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TokenPolicy;

    fn client() -> Client {
        Client {
            client_id: "web".into(),
            name: "web".into(),
            secret_hash: None,
            allowed_scopes: ScopeSet::parse("openid read").unwrap(),
            default_scopes: ScopeSet::parse("read").unwrap(),
            grant_types: vec![GrantType::AuthorizationCode],
            redirect_uris: vec!["https://app.example/cb".into()],
            policy: TokenPolicy::default(),
            disabled: false,
            created_at: 0,
        }
    }

    fn request() -> AuthorizeRequest {
        AuthorizeRequest {
            response_type: Some("code".into()),
            client_id: Some("web".into()),
            redirect_uri: Some("https://app.example/cb".into()),
            scope: Some("openid".into()),
            state: Some("xyz".into()),
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            code_challenge_method: Some("S256".into()),
            nonce: None,
        }
    }

    #[test]
    fn a_complete_request_is_valid() {
        let v = validate(&request(), Some(client())).unwrap();
        assert_eq!(v.redirect_uri, "https://app.example/cb");
        assert_eq!(v.scope.to_string(), "openid");
    }

    #[test]
    fn an_unknown_client_or_unregistered_redirect_is_never_redirected_to() {
        assert!(matches!(
            validate(&request(), None),
            Err(AuthorizeError::Page(_))
        ));
        for uri in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://evil",
        ] {
            let r = AuthorizeRequest {
                redirect_uri: Some(uri.into()),
                ..request()
            };
            assert!(matches!(
                validate(&r, Some(client())),
                Err(AuthorizeError::Page(_))
            ));
        }
    }

    #[test]
    fn missing_or_plain_pkce_is_sent_back_with_the_state() {
        let plain = AuthorizeRequest {
            code_challenge_method: Some("plain".into()),
            ..request()
        };
        let missing = AuthorizeRequest {
            code_challenge: None,
            ..request()
        };
        let no_method = AuthorizeRequest {
            code_challenge_method: None,
            ..request()
        };
        for r in [plain, missing, no_method] {
            match validate(&r, Some(client())) {
                Err(AuthorizeError::Redirect { state, error, .. }) => {
                    assert_eq!(state.as_deref(), Some("xyz"));
                    assert_eq!(error.code, ErrorCode::InvalidRequest);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn other_response_types_and_scopes_beyond_the_client_are_refused() {
        let token = AuthorizeRequest {
            response_type: Some("token".into()),
            ..request()
        };
        let wide = AuthorizeRequest {
            scope: Some("admin".into()),
            ..request()
        };
        let code = |r| match validate(&r, Some(client())) {
            Err(AuthorizeError::Redirect { error, .. }) => error.code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(token), ErrorCode::UnsupportedResponseType);
        assert_eq!(code(wide), ErrorCode::InvalidScope);
    }

    #[test]
    fn the_csrf_token_is_bound_to_its_cookie() {
        let guard = CsrfGuard::new([7; 32]);
        let cookie = guard.new_cookie(&crate::clock::OsRandom);
        let token = guard.form_token(&cookie);
        assert!(guard.verify(Some(&cookie), Some(&token)));
        assert!(!guard.verify(Some("another"), Some(&token)));
        assert!(!guard.verify(None, Some(&token)));
        assert!(!guard.verify(Some(&cookie), None));
        assert!(!CsrfGuard::new([8; 32]).verify(Some(&cookie), Some(&token)));
    }
}
