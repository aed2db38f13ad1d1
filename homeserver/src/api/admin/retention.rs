//! Myelin's retention endpoints: run the purge now, and show a room's effective policy.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use http::StatusCode;
use ruma::RoomId;
use serde_json::json;

use super::{Admin, audited, json};
use crate::api::PathParams;
use crate::error::{Error, Result};
use crate::rooms::retention;
use crate::rooms::retention_purge;
use crate::state::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_myelin/admin/v1/retention/purge", post(purge))
        .route("/_myelin/admin/v1/rooms/{room_id}/retention", get(room_policy))
}

/// Runs the purge the background job runs, at once, and answers what it removed.
async fn purge(State(state): State<AppState>, admin: Admin) -> Result<Response> {
    if !state.config.retention.enabled {
        return Err(Error::custom(
            StatusCode::BAD_REQUEST,
            "M_UNKNOWN",
            "Retention is not enabled ([retention] enabled = false)",
        ));
    }
    let work = {
        let state = state.clone();
        async move { retention_purge::purge_expired(&state).await }
    };
    let summary = audited(&state, admin.actor(), json!({}), work, |_| ("retention_purge", None)).await?;
    Ok(json(StatusCode::OK, serde_json::to_value(summary).map_err(|e| Error::internal(e.to_string()))?))
}

async fn room_policy(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(room_id): PathParams<String>,
) -> Result<Response> {
    let room_id =
        RoomId::parse(&room_id).map_err(|_| Error::invalid_param(format!("{room_id} is not a legal room ID")))?;
    let room = crate::rooms::state::room(&state, room_id.as_str()).await?;
    let retention::RoomPolicy { content, kind, policy } = retention::room_policy(&state, &room).await?;
    let held_redactions = state.storage.held_redactions(room_id.as_str()).await?;
    Ok(json(
        StatusCode::OK,
        json!({
            "room_id": room_id,
            "enabled": state.config.retention.enabled,
            "min_lifetime": policy.min_lifetime,
            "max_lifetime": policy.max_lifetime,
            // Which lifetimes apply: "room", "direct_default", "encrypted_default",
            // "server_default" or "none".
            "applied": policy.source,
            "is_direct": kind.is_direct,
            "is_encrypted": kind.is_encrypted,
            "room_policy": content,
            // Redacted events whose original content is still held for `min_lifetime`.
            "held_redactions": held_redactions,
        }),
    ))
}
