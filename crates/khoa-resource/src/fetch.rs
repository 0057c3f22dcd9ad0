//! The HTTP the layer does itself (the JWKS `GET`, the introspection `POST`, the revocation
//! list `GET`), behind the [`Fetcher`] trait.
//!
//! The default [`HyperFetcher`] speaks plain HTTP over hyper-util's pooled client: right for a
//! khoa on loopback or a private network segment. This crate deliberately links no TLS stack —
//! which one (rustls with which roots, native-tls, a corporate proxy) is the integrator's
//! decision. Two ways to add TLS:
//!
//! - [`HyperFetcher::with_connector`] with any hyper-util connector, e.g.
//!   `hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_only().enable_http1().build()`;
//! - or implement [`Fetcher`] over the HTTP client the application already has (reqwest…).
//!
//! The plain [`HyperFetcher::new`] refuses `https://` URLs (it fails closed; it never
//! downgrades), so a forgotten connector shows up as a 503 and a log line, not as cleartext.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed `Send` future, the return type of [`Fetcher::fetch`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A transport failure (no HTTP response, or an unreadable one). HTTP error statuses are not
/// `FetchError`s: the caller judges them.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// Sends one HTTP request and reads the whole response body.
///
/// Implementations must not log request bodies or `Authorization` headers: the introspection
/// request carries a bearer token and the resource server's client secret (as does the
/// revocation list request).
pub trait Fetcher: Send + Sync + 'static {
    fn fetch(&self, request: Request<Bytes>) -> BoxFuture<'_, Result<Response<Bytes>, FetchError>>;
}

/// Largest response body read. A JWKS of a few keys is well under 4 KiB, but the first poll
/// of the JWT revocation list returns every unexpired revoked JWT, about 60 bytes each: 4 MiB
/// is room for some 70 000. A list that does not fit fails every poll, and after the staleness
/// bound every JWT gets 503 — raise [`HyperFetcher::max_body`] if you revoke in bulk.
const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// [`Fetcher`] over hyper-util's pooled HTTP/1.1 client, generic over the connector.
pub struct HyperFetcher<C = HttpConnector> {
    client: Client<C, Full<Bytes>>,
    max_body: usize,
}

impl HyperFetcher<HttpConnector> {
    /// Plain HTTP only (see the module docs for TLS).
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Self::with_connector(connector)
    }
}

impl Default for HyperFetcher<HttpConnector> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> HyperFetcher<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    /// Any hyper-util connector: this is where TLS plugs in.
    pub fn with_connector(connector: C) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        HyperFetcher {
            client,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// Caps the response body size (default 4 MiB); a longer body is a [`FetchError`].
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

impl<C> Fetcher for HyperFetcher<C>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn fetch(&self, request: Request<Bytes>) -> BoxFuture<'_, Result<Response<Bytes>, FetchError>> {
        Box::pin(async move {
            let res = self
                .client
                .request(request.map(Full::new))
                .await
                .map_err(|e| FetchError(format!("request failed: {e}")))?;
            let (parts, body) = res.into_parts();
            let body = Limited::new(body, self.max_body)
                .collect()
                .await
                .map_err(|e| FetchError(format!("reading the response failed: {e}")))?
                .to_bytes();
            Ok(Response::from_parts(parts, body))
        })
    }
}
