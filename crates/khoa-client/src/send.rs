//! Calling a protected API with a source's token: [`TokenSource::send`] adds the token, and
//! after a 401 invalidates that very token, gets one new token and sends once more.

use http::{HeaderName, HeaderValue, Method, header::AUTHORIZATION};

use crate::TokenSource;
use crate::error::Error;

/// Why [`TokenSource::send`] has no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No token could be had.
    #[error(transparent)]
    Token(#[from] Error),
    /// The request itself failed.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

impl TokenSource {
    /// Sends `request` through `http` with `Authorization` set to a fresh token (and, on a
    /// POST, PUT, PATCH or DELETE, `x-otp-token` set to the OTP token the answer carried
    /// beside it, when it carried one: seed 000's mutating requests need both). A 401 answer
    /// invalidates the token it refused (by generation: a newer token is kept), and the request
    /// is sent once more with a new token, when its body can be replayed (not a stream) and the
    /// policy's `retry_unauthorized` is on. A second 401 is returned as it is.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(source: khoa_client::TokenSource) -> Result<(), khoa_client::SendError> {
    /// let http = reqwest::Client::new();
    /// let req = http.get("https://api.example/v1/accounts").build()?;
    /// let res = source.send(&http, req).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send(
        &self,
        http: &reqwest::Client,
        request: reqwest::Request,
    ) -> Result<reqwest::Response, SendError> {
        let retry = if self.policy().retry_unauthorized {
            request.try_clone()
        } else {
            None
        };
        let token = self.token().await?;
        let res = http.execute(with_token(request, &token)?).await?;
        if res.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(res);
        }
        self.invalidate(token.generation());
        let Some(again) = retry else {
            return Ok(res);
        };
        self.count_retry();
        let token = self.token().await?;
        Ok(http.execute(with_token(again, &token)?).await?)
    }
}

/// Where seed 000 wants the session's OTP token on mutating requests.
const OTP_HEADER: HeaderName = HeaderName::from_static("x-otp-token");

/// `request` with `Authorization` set to `token` (marked sensitive: never in a debug print),
/// and `x-otp-token` on a mutating request when the token carries an OTP.
pub(crate) fn with_token(
    mut request: reqwest::Request,
    token: &crate::AccessToken,
) -> Result<reqwest::Request, Error> {
    let mut value = HeaderValue::from_str(&token.authorization())
        .map_err(|_| Error::Answer("the access token is not a valid header value".into()))?;
    value.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, value);
    let mutating = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if let Some(otp) = token.otp().filter(|_| mutating) {
        let mut value = HeaderValue::from_str(otp)
            .map_err(|_| Error::Answer("the OTP token is not a valid header value".into()))?;
        value.set_sensitive(true);
        request.headers_mut().insert(OTP_HEADER, value);
    }
    Ok(request)
}
