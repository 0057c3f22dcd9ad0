//! The accept loop. By hand rather than `axum::serve`, which serves every connection it
//! accepts: `drop_connections` needs to close one before it is answered.

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, post};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::state::Shared;

/// Every route the stand-in serves.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/token", post(crate::token::token))
        .route("/resource", any(crate::resource::resource))
        .route("/resource/{*rest}", any(crate::resource::resource))
        .with_state(shared)
}

/// Serves until the task is aborted. The connections are tasks of a `JoinSet` owned here, so
/// that aborting this task (dropping the `StandIn`) closes them too.
pub(crate) async fn run(listener: TcpListener, shared: Arc<Shared>) {
    let router = router(shared.clone());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Out of file descriptors and the like: let the connections finish first.
                    tokio::task::yield_now().await;
                    continue;
                };
                if shared.take_dropped_connection() {
                    // Closed unread: the client's request, if it was sent, gets a reset or
                    // an end of stream, never an answer.
                    drop(stream);
                    continue;
                }
                connections.spawn(serve(stream, router.clone(), shared.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One HTTP/1.1 connection, kept alive as the client wishes.
async fn serve(stream: tokio::net::TcpStream, router: Router, shared: Arc<Shared>) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let router = router.clone();
        let dropped = shared.take_dropped_connection();
        async move {
            if dropped {
                // hyper closes a connection whose service fails, without writing anything:
                // a pooled connection is dropped like a new one.
                return Err(std::io::Error::other("closed by drop_connections"));
            }
            match tower::ServiceExt::oneshot(router, request).await {
                Ok(response) => Ok(response),
                Err(never) => match never {},
            }
        }
    });
    // An error here is the connection ending badly (a client gone, a dropped connection):
    // nothing the stand-in or its test can act on.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}
