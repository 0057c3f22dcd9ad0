//! The wire dialects: the five built-in ones, one file each, each a thin adapter (parse →
//! engine → render); and every dialect loaded from a definition file ([`registry`]), served by
//! one generic adapter ([`generic`]). None holds token logic.

pub mod generic;
pub mod oauth2;
pub mod registry;
pub mod signature;
pub mod vietqr;

use std::sync::Arc;

use khoa_dialect::Dialect;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::post;
use khoa_core::grant::{ClientAuth, TokenRequest};
use secrecy::SecretString;

use crate::config::DialectsConfig;
use crate::protocol::Refusal;
use crate::state::AppState;
use crate::wire::{Authorization, RepeatedHeader, parse_authorization, single_header};

/// A `client_credentials` request from plain RFC 7617 Basic credentials — how the body-less
/// token endpoints (seeds 001 and 003) authenticate. `Ok(None)` when the header is missing or
/// is not readable Basic; an error when it is repeated.
pub fn basic_client_credentials(
    headers: &HeaderMap,
) -> Result<Option<TokenRequest>, RepeatedHeader> {
    let auth = single_header(headers, header::AUTHORIZATION.as_str())?;
    // Their documents base64-encode `id:secret` as is, without RFC 6749's form-encoding.
    Ok(match parse_authorization(auth, false) {
        Authorization::Basic { user, password } => Some(TokenRequest::new(
            "client_credentials",
            ClientAuth::Basic {
                client_id: user,
                secret: SecretString::from(password),
            },
        )),
        _ => None,
    })
}

/// Sets `Retry-After` (RFC 9110 §10.2.3) in whole seconds, at least 1: a 0 would invite an
/// immediate retry that is bound to fail again.
pub fn set_retry_after(res: &mut Response, secs: u64) {
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
}

/// How a route renders a refusal made below its handler ([`crate::protocol`]).
pub type RenderRefusal = Arc<dyn Fn(&DialectsConfig, Refusal) -> Response + Send + Sync>;

/// An enabled dialect route: its path, the dialect it belongs to (the `dialect` label of
/// metrics and request logs), and how refusals made below its handler are rendered.
pub struct DialectRoute {
    pub path: String,
    pub dialect: &'static str,
    pub refuse: RenderRefusal,
}

/// Every enabled dialect route: the built-ins', then those of the definition files.
pub fn route_dialects(cfg: &DialectsConfig, files: &[Arc<Dialect>]) -> Vec<DialectRoute> {
    let mut r = Vec::new();
    let mut add = |path: &String, dialect, refuse: fn(&DialectsConfig, Refusal) -> Response| {
        r.push(DialectRoute {
            path: path.clone(),
            dialect,
            refuse: Arc::new(refuse),
        })
    };
    if cfg.oauth2.enabled {
        let o = &cfg.oauth2;
        for p in [
            &o.token_path,
            &o.revocation_path,
            &o.introspection_path,
            &o.revocation_list_path,
        ] {
            add(p, "oauth2", oauth2::refusal);
        }
    }
    if cfg.vietqr.enabled {
        add(
            &cfg.vietqr.transaction_sync_path,
            "vietqr",
            vietqr::transaction_sync_refusal,
        );
    }
    for d in files {
        for e in &d.endpoints {
            let dialect = d.clone();
            r.push(DialectRoute {
                path: e.path.clone(),
                dialect: registry::label(&d.name),
                refuse: Arc::new(move |_, refusal| generic::protocol_refusal(&dialect, refusal)),
            });
        }
    }
    r
}

/// The routes of every enabled dialect, at their configured paths.
pub fn routes(cfg: &DialectsConfig, files: &[Arc<Dialect>]) -> Router<AppState> {
    let mut r = Router::new();
    for d in files {
        for (i, e) in d.endpoints.iter().enumerate() {
            r = r.route(&e.path, generic::route(d.clone(), i));
        }
    }
    if cfg.oauth2.enabled {
        r = r
            .route(&cfg.oauth2.token_path, post(oauth2::token))
            .route(&cfg.oauth2.revocation_path, post(oauth2::revocation))
            .route(&cfg.oauth2.introspection_path, post(oauth2::introspect))
            .route(
                &cfg.oauth2.revocation_list_path,
                axum::routing::get(oauth2::revoked_jwts),
            );
    }
    if cfg.vietqr.enabled {
        r = r.route(
            &cfg.vietqr.transaction_sync_path,
            post(vietqr::transaction_sync),
        );
    }
    r
}
