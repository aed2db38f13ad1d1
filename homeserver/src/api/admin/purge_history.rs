//! `POST /v1/purge_history/{roomId}[/{eventId}]` as a background task, and its status.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use http::StatusCode;
use ruma::{OwnedRoomId, RoomId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, AdminJson, audited, json};
use crate::admin_tasks::{self, PURGE_HISTORY};
use crate::api::PathParams;
use crate::error::{Error, Result};
use crate::rooms::history_purge::purge_history;
use crate::state::AppState;
use crate::storage::PurgePoint;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_synapse/admin/v1/purge_history/{room_id}", post(purge_up_to_body))
        .route("/_synapse/admin/v1/purge_history/{room_id}/{event_id}", post(purge_up_to_event))
        .route("/_synapse/admin/v1/purge_history_status/{purge_id}", get(status))
}

#[derive(Debug, Deserialize)]
struct PurgeBody {
    #[serde(default)]
    delete_local_events: bool,
    purge_up_to_event_id: Option<String>,
    purge_up_to_ts: Option<i64>,
}

/// The largest integer canonical JSON (and so the audit log) can hold.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

async fn purge_up_to_body(
    State(state): State<AppState>,
    admin: Admin,
    PathParams(room_id): PathParams<String>,
    AdminJson(body): AdminJson<Value>,
) -> Result<Response> {
    start(state, admin, room_id, None, body).await
}

async fn purge_up_to_event(
    State(state): State<AppState>,
    admin: Admin,
    PathParams((room_id, event_id)): PathParams<(String, String)>,
    AdminJson(body): AdminJson<Value>,
) -> Result<Response> {
    start(state, admin, room_id, Some(event_id), body).await
}

async fn start(
    state: AppState,
    admin: Admin,
    room_id: String,
    event_id: Option<String>,
    body: Value,
) -> Result<Response> {
    let room_id: OwnedRoomId =
        RoomId::parse(&room_id).map_err(|_| Error::invalid_param(format!("{room_id} is not a legal room ID")))?;
    let parsed: PurgeBody = serde_json::from_value(body).map_err(|e| Error::bad_json(e.to_string()))?;
    state.storage.room(room_id.as_str()).await?.ok_or_else(|| Error::not_found("Unknown room"))?;
    let event_id = event_id.or(parsed.purge_up_to_event_id);
    let point = match (&event_id, parsed.purge_up_to_ts) {
        (Some(event_id), _) => {
            let ordering = state.storage.event_ordering_in_room(room_id.as_str(), event_id).await?;
            PurgePoint::Before(ordering.ok_or_else(|| Error::not_found("Event not found in this room"))?)
        }
        (None, Some(ts)) if (0..=MAX_SAFE_INTEGER).contains(&ts) => PurgePoint::BeforeTs(ts),
        (None, Some(_)) => return Err(Error::invalid_param("purge_up_to_ts must be a timestamp in milliseconds")),
        (None, None) => return Err(Error::missing_param("must specify purge_up_to_event_id or purge_up_to_ts")),
    };
    let delete_local = parsed.delete_local_events;
    let audit_params = match point {
        PurgePoint::Before(_) => json!({"delete_local_events": delete_local, "purge_up_to_event_id": event_id}),
        PurgePoint::BeforeTs(ts) => json!({"delete_local_events": delete_local, "purge_up_to_ts": ts}),
    };
    let target = room_id.to_string();
    let actor = admin.actor().to_owned();
    let work = {
        let state = state.clone();
        async move {
            let job = {
                let state = state.clone();
                let room_id = room_id.clone();
                async move {
                    match purge_history(&state, &room_id, point, delete_local).await {
                        Ok(purged) => (Some(json!({"purged_events": purged})), Ok(())),
                        Err(e) => (None, Err(e)),
                    }
                }
            };
            admin_tasks::start(&state, PURGE_HISTORY, room_id.as_str(), &actor, job).await
        }
    };
    let purge_id = audited(&state, admin.actor(), audit_params, work, move |_| ("purge_history", Some(target))).await?;
    Ok(json(StatusCode::OK, json!({"purge_id": purge_id})))
}

async fn status(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(purge_id): PathParams<String>,
) -> Result<Response> {
    let task = state.storage.admin_task(&purge_id).await?.filter(|task| task.kind == PURGE_HISTORY);
    let task = task.ok_or_else(|| Error::not_found(format!("purge id '{purge_id}' not found")))?;
    let mut body = json!({"status": task.status});
    if let Some(error) = &task.error {
        body["error"] = json!(error);
    }
    Ok(json(StatusCode::OK, body))
}
