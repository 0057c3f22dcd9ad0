//! The axum extractor handlers use to read the claims the layer validated.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use std::ops::Deref;

use crate::auth::require;
use crate::claims::{Claims, Scopes};
use crate::error::AuthError;

/// The [`Claims`] of the request's access token, as [`crate::KhoaAuthLayer`] validated them.
///
/// Rejects with 401 (RFC 6750 challenge) when the request did not pass through the layer, so
/// that a route left outside it by mistake fails closed. `Option<KhoaClaims>` never rejects.
#[derive(Clone, Debug)]
pub struct KhoaClaims(pub Claims);

impl KhoaClaims {
    /// `Err(insufficient_scope)` (403) unless the token carries every one of `scopes`: for
    /// checks that depend on what the handler is about to do.
    pub fn require<I, S>(&self, scopes: I) -> Result<(), AuthError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        require(&self.0, &scopes.into_iter().collect::<Scopes>())
    }
}

impl Deref for KhoaClaims {
    type Target = Claims;

    fn deref(&self) -> &Claims {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for KhoaClaims {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Claims>()
            .cloned()
            .map(KhoaClaims)
            .ok_or(AuthError::Missing)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for KhoaClaims {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Claims>().cloned().map(KhoaClaims))
    }
}
