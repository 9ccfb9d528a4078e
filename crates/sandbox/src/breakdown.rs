//! Craftgate's payment transaction breakdown.

use std::sync::Arc;

use axum::Router;

use crate::Shared;

/// Settings of this surface.
#[derive(Clone, Debug, Default)]
pub struct Config {}

/// State of this surface while the sandbox runs.
pub(crate) struct State {
    #[allow(dead_code)]
    config: Config,
}

impl State {
    pub(crate) fn new(config: Config) -> Self {
        State { config }
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
}
