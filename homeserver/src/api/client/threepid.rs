//! Third-party identifiers (email, phone): not supported. Listing answers an empty list; every
//! attempt to add, bind or verify one is refused with `M_THREEPID_DENIED`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use ruma::api::error::ErrorKind;

use crate::api::authed_from_parts;
use crate::error::{Error, Result};
use crate::state::AppState;

const REFUSED: &[&str] = &[
    "/_matrix/client/v3/account/3pid/add",
    "/_matrix/client/v3/account/3pid/bind",
    "/_matrix/client/v3/account/3pid/delete",
    "/_matrix/client/v3/account/3pid/unbind",
    "/_matrix/client/v3/account/3pid/email/requestToken",
    "/_matrix/client/v3/account/3pid/msisdn/requestToken",
    "/_matrix/client/v3/register/email/requestToken",
    "/_matrix/client/v3/register/msisdn/requestToken",
    "/_matrix/client/v3/account/password/email/requestToken",
    "/_matrix/client/v3/account/password/msisdn/requestToken",
];

pub fn routes(mut router: Router<AppState>) -> Router<AppState> {
    for path in REFUSED {
        router = router.route(path, post(refuse));
    }
    // POST here is the deprecated way to add one.
    router.route("/_matrix/client/v3/account/3pid", get(list).post(refuse))
}

async fn refuse() -> Error {
    Error::matrix(
        StatusCode::FORBIDDEN,
        ErrorKind::ThreepidDenied,
        "This server does not support third-party identifiers (email, phone)",
    )
}

/// Always an explicit empty list, as Synapse answers (ruma's response type would omit it).
async fn list(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: http::HeaderMap,
) -> Result<Response> {
    authed_from_parts(&state, &headers, &params).await?;
    Ok(axum::Json(serde_json::json!({"threepids": []})).into_response())
}
