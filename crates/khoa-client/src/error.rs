//! What can go wrong getting a token. Errors are `Clone`: one failed token call answers every
//! caller that waited for it.

use std::sync::Arc;
use std::time::Duration;

/// An error of a [`crate::TokenSource`].
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The source cannot build the request it was asked for: a credential the dialect needs
    /// is missing, a key does not parse. Not retried: the configuration must change.
    #[error("{0}")]
    Config(String),
    /// The token endpoint refused the credentials (a 4xx other than 408 and 429). The source
    /// tries again after its back-off, in case the credentials were fixed meanwhile.
    #[error("the token endpoint refused the request: HTTP {status}{}", describe(.error))]
    Refused { status: u16, error: Option<String> },
    /// The token endpoint could not be reached or answered "later" (408, 429, 5xx, a dropped
    /// connection). Retried after a back-off, or after its `Retry-After`.
    #[error("the token endpoint is unavailable: {reason}")]
    Unavailable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The answer said success but is not what the definition describes.
    #[error("the token endpoint's answer is unreadable: {0}")]
    Answer(String),
    /// A previous failure, answered without a new token call until the back-off ends.
    #[error("backing off for {} ms after: {last}", .wait.as_millis())]
    BackingOff { wait: Duration, last: Arc<Error> },
}

fn describe(error: &Option<String>) -> String {
    error
        .as_ref()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default()
}

impl Error {
    /// Whether waiting may cure it.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable { .. } => true,
            Error::BackingOff { last, .. } => last.is_transient(),
            _ => false,
        }
    }
}
