//! What every handler can reach.

use khoa_core::engine::Engine;
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub config: Arc<Config>,
    /// This server's counters (`GET /metrics`); the rate limiter reports to it.
    pub metrics: Arc<Metrics>,
}
