//! What every handler can reach.

use khoa_core::engine::Engine;
use std::sync::Arc;

use crate::config::Config;
use crate::limits::RateLimits;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub config: Arc<Config>,
    /// This node's rate-limit buckets.
    pub limits: Arc<RateLimits>,
    /// This server's counters (`GET /metrics`); the rate limiter reports to it.
    pub metrics: Arc<Metrics>,
    /// The dialects served from definitions: built-in ones and the files of `dialects.dir`.
    pub defined_dialects: Arc<Vec<Arc<khoa_dialect::Dialect>>>,
}
