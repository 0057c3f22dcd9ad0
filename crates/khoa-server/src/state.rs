//! What every handler can reach.

use khoa_core::engine::Engine;
use std::sync::Arc;

use crate::config::Config;
use crate::limits::RateLimits;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub config: Arc<Config>,
    /// This node's rate-limit buckets.
    pub limits: Arc<RateLimits>,
}
