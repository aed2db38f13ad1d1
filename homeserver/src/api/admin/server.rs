//! `GET /_synapse/admin/v1/server_version`.

use axum::Router;
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use serde_json::json;

use super::{Admin, json};
use crate::state::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.route("/_synapse/admin/v1/server_version", get(server_version))
}

async fn server_version(_admin: Admin) -> Response {
    json(StatusCode::OK, json!({"server_version": format!("Myelin {}", env!("CARGO_PKG_VERSION"))}))
}
