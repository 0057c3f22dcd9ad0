//! The wire dialects: one file each, each a thin adapter (parse → engine → render). None holds
//! token logic; adding a dialect is one file here plus its routes in [`routes`].

pub mod bankhub;
pub mod derivative;
pub mod oauth2;
pub mod partner;
pub mod vietqr;

use axum::Router;
use axum::routing::post;

use crate::config::DialectsConfig;
use crate::state::AppState;

/// The routes of every enabled dialect, at their configured paths.
pub fn routes(cfg: &DialectsConfig) -> Router<AppState> {
    let mut r = Router::new();
    if cfg.oauth2.enabled {
        r = r.route(&cfg.oauth2.token_path, post(oauth2::token));
    }
    if cfg.derivative.enabled {
        r = r
            .route(
                &cfg.derivative.derivative_path,
                post(derivative::derivative),
            )
            .route(
                &cfg.derivative.underlying_path,
                post(derivative::underlying),
            );
    }
    if cfg.bankhub.enabled {
        r = r.route(&cfg.bankhub.path, post(bankhub::token));
    }
    if cfg.partner.enabled {
        r = r
            .route(&cfg.partner.login_path, post(partner::login))
            .route(&cfg.partner.refresh_path, post(partner::refresh));
    }
    if cfg.vietqr.enabled {
        r = r
            .route(&cfg.vietqr.token_path(), post(vietqr::token_generate))
            .route(
                &cfg.vietqr.transaction_sync_path,
                post(vietqr::transaction_sync),
            );
    }
    r
}
