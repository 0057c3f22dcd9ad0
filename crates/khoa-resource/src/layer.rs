//! The tower middleware: [`KhoaAuthLayer`] authenticates, [`RequireScopes`] demands scopes of
//! one route.

use axum_core::response::{IntoResponse, Response};
use http::Request;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::{KhoaAuth, require};
use crate::claims::{Claims, Scopes};
use crate::error::AuthError;
use crate::fetch::BoxFuture;

/// Authenticates every request: a valid bearer token (and the scopes configured with
/// [`crate::KhoaAuthBuilder::required_scopes`]) puts its [`Claims`] into the request's
/// extensions and calls the inner service; anything else is answered here (RFC 6750 §3:
/// 401 `invalid_token`, 403 `insufficient_scope`, or 503 when the issuer cannot be reached).
#[derive(Clone, Debug)]
pub struct KhoaAuthLayer {
    auth: KhoaAuth,
}

impl KhoaAuthLayer {
    pub fn new(auth: KhoaAuth) -> Self {
        KhoaAuthLayer { auth }
    }
}

impl<S> Layer<S> for KhoaAuthLayer {
    type Service = KhoaAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KhoaAuthService {
            auth: self.auth.clone(),
            inner,
        }
    }
}

/// The service [`KhoaAuthLayer`] wraps around an inner one.
#[derive(Clone, Debug)]
pub struct KhoaAuthService<S> {
    auth: KhoaAuth,
    inner: S,
}

impl<S, B> Service<Request<B>> for KhoaAuthService<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was not polled ready stays behind (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let verdict = auth.authenticate(req.headers()).await;
            match verdict {
                Ok(claims) => {
                    req.extensions_mut().insert(claims);
                    inner.call(req).await.map(IntoResponse::into_response)
                }
                Err(refused) => Ok(refused.into_response()),
            }
        })
    }
}

/// Demands scopes of the routes it wraps, under a [`KhoaAuthLayer`]:
/// `.route("/orders", post(place).route_layer(RequireScopes::new(["orders:write"])))`.
/// A request without [`Claims`] (a route not behind the auth layer) is refused with 401.
#[derive(Clone, Debug)]
pub struct RequireScopes {
    required: Scopes,
}

impl RequireScopes {
    pub fn new<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RequireScopes {
            required: scopes.into_iter().collect(),
        }
    }
}

impl<S> Layer<S> for RequireScopes {
    type Service = RequireScopesService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopesService {
            required: self.required.clone(),
            inner,
        }
    }
}

/// The service [`RequireScopes`] wraps around an inner one.
#[derive(Clone, Debug)]
pub struct RequireScopesService<S> {
    required: Scopes,
    inner: S,
}

impl<S, B> Service<Request<B>> for RequireScopesService<S>
where
    S: Service<Request<B>> + Send,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let verdict = match req.extensions().get::<Claims>() {
            Some(claims) => require(claims, &self.required),
            None => {
                tracing::error!("RequireScopes on a route that no KhoaAuthLayer covers");
                Err(AuthError::Missing)
            }
        };
        match verdict {
            Ok(()) => {
                let fut = self.inner.call(req);
                Box::pin(async move { fut.await.map(IntoResponse::into_response) })
            }
            Err(refused) => Box::pin(async move { Ok(refused.into_response()) }),
        }
    }
}
