//! The HTTP layer: extract, call a service, map the result. One file per API area.

pub mod client;
mod ops;
pub mod ruma;
pub mod server;

use axum::Router;
use axum::response::IntoResponse;
use http::StatusCode;

use crate::error::Error;
use crate::state::AppState;

/// Which APIs a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Everything (the default single listener).
    All,
    /// The client-server API and media (when federation has its own listener).
    Client,
    /// The server-server API and keys.
    Federation,
}

/// The routes a listener answers; health and readiness are on every listener.
pub fn routes(surface: Surface) -> Router<AppState> {
    let mut router = ops::routes(Router::new());
    if surface != Surface::Federation {
        router = client::routes(router);
    }
    if surface != Surface::Client {
        router = server::routes(router);
    }
    router
        .fallback(|| async { Error::unrecognized(StatusCode::NOT_FOUND, "Unrecognized request").into_response() })
        .method_not_allowed_fallback(|| async {
            Error::unrecognized(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed for this endpoint").into_response()
        })
}
