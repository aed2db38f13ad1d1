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

/// Every route the server answers.
pub fn routes() -> Router<AppState> {
    let router = ops::routes(client::routes(Router::new()));
    server::routes(router)
        .fallback(|| async { Error::unrecognized(StatusCode::NOT_FOUND, "Unrecognized request").into_response() })
        .method_not_allowed_fallback(|| async {
            Error::unrecognized(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed for this endpoint").into_response()
        })
}
