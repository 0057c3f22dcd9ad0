//! Client Credentials grant (RFC 6749 §4.4): the client acts on its own behalf.

use async_trait::async_trait;
use std::sync::Arc;

use super::{GrantHandler, TokenRequest, resolve_scope};
use crate::error::{EngineError, ErrorCode, OAuthError};
use crate::mint::{IssuedTokens, Minter};
use crate::model::Client;

pub struct ClientCredentialsGrant {
    pub(crate) minter: Arc<Minter>,
}

#[async_trait]
impl GrantHandler for ClientCredentialsGrant {
    async fn handle(
        &self,
        client: &Client,
        request: &TokenRequest,
    ) -> Result<IssuedTokens, EngineError> {
        // §4.4: "MUST only be used by confidential clients".
        if client.is_public() {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "a public client cannot use client_credentials",
            )
            .into());
        }
        let scope = resolve_scope(request.scope.as_deref(), client, None)?;
        // §4.4.3: a refresh token SHOULD NOT be included; the client can always ask again.
        let grantee = self
            .minter
            .grantee(client, &client.client_id, &client.client_id);
        self.minter.issue(client, &grantee, scope, false).await
    }
}
