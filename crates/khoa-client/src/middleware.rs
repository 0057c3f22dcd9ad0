//! The source as a `reqwest-middleware` layer (feature `middleware`): every request through
//! the client gets a fresh token, and a 401 costs one new token and one retry, as
//! [`TokenSource::send`] does.

use http::Extensions;
use reqwest::{Request, Response, StatusCode};
use reqwest_middleware::{Middleware, Next};

use crate::TokenSource;

/// A [`Middleware`] adding `source`'s token to every request.
///
/// # Examples
///
/// ```no_run
/// # fn demo(source: khoa_client::TokenSource) {
/// let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(khoa_client::TokenMiddleware::new(source))
///     .build();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TokenMiddleware {
    source: TokenSource,
}

impl TokenMiddleware {
    pub fn new(source: TokenSource) -> Self {
        TokenMiddleware { source }
    }
}

fn authorize(req: Request, token: &crate::AccessToken) -> reqwest_middleware::Result<Request> {
    crate::send::with_token(req, token).map_err(reqwest_middleware::Error::middleware)
}

#[async_trait::async_trait]
impl Middleware for TokenMiddleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let retry = if self.source.policy().retry_unauthorized {
            req.try_clone()
        } else {
            None
        };
        let token = self
            .source
            .token()
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        let res = next
            .clone()
            .run(authorize(req, &token)?, extensions)
            .await?;
        if res.status() != StatusCode::UNAUTHORIZED {
            return Ok(res);
        }
        self.source.invalidate(token.generation());
        let Some(again) = retry else {
            return Ok(res);
        };
        self.source.count_retry();
        let token = self
            .source
            .token()
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        next.run(authorize(again, &token)?, extensions).await
    }
}
