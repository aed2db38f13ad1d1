//! Endpoints for operators and orchestrators, outside the Matrix API: liveness and readiness.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;

use crate::state::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.route("/health", get(health)).route("/ready", get(ready))
}

/// Liveness: the process is up and answering HTTP.
async fn health() -> Response {
    (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"}))).into_response()
}

/// Readiness: the database answers (migrations ran before the listener opened) and the server is
/// not shutting down.
async fn ready(State(state): State<AppState>) -> Response {
    if state.rooms.is_stopping() {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "stopping"})))
            .into_response();
    }
    match state.storage.ping().await {
        Ok(()) => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready"}))).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            let body = serde_json::json!({"status": "database unreachable"});
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}
