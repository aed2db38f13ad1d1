//! Deleting and blocking rooms: `DELETE /v2/rooms/{roomId}` as a background task with status
//! polling (and v1's synchronous form), and `GET`/`PUT /v1/rooms/{roomId}/block`.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{delete, get, post};
use http::StatusCode;
use ruma::{OwnedRoomId, OwnedUserId, RoomId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, AdminJson, audited, json};
use crate::admin_tasks::{self, DELETE_ROOM};
use crate::api::PathParams;
use crate::error::{Error, Result};
use crate::rooms::shutdown::{Shutdown, ShutdownReport, shutdown};
use crate::state::AppState;
use crate::storage::AdminTaskRow;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_synapse/admin/v2/rooms/{room_id}", delete(delete_room))
        .route("/_synapse/admin/v2/rooms/{room_id}/delete_status", get(status_by_room))
        .route("/_synapse/admin/v2/rooms/delete_status/{delete_id}", get(status_by_id))
        .route("/_synapse/admin/v1/rooms/{room_id}/block", get(block_status).put(set_block))
        .route("/_synapse/admin/v1/rooms/{room_id}", delete(delete_room_now))
        .route("/_synapse/admin/v1/rooms/{room_id}/delete", post(delete_room_now))
}

fn parse_room_id(raw: &str) -> Result<OwnedRoomId> {
    RoomId::parse(raw).map_err(|_| Error::invalid_param(format!("{raw} is not a legal room ID")))
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct DeleteBody {
    #[serde(default)]
    block: bool,
    #[serde(default = "default_true")]
    purge: bool,
    #[serde(default)]
    force_purge: bool,
    new_room_user_id: Option<OwnedUserId>,
    room_name: Option<String>,
    message: Option<String>,
}

/// The checked request and the parameters its audit entry records.
async fn checked_request(state: &AppState, room_id: &RoomId, body: Value) -> Result<(Shutdown, Value)> {
    let parsed: DeleteBody = serde_json::from_value(body).map_err(|e| Error::bad_json(e.to_string()))?;
    if !parsed.block && state.storage.room(room_id.as_str()).await?.is_none() {
        return Err(Error::invalid_param(
            "Unknown room: only blocking is possible for a room this server does not know",
        ));
    }
    if let Some(user_id) = &parsed.new_room_user_id
        && (user_id.server_name() != state.server_name || state.storage.user(user_id.as_str()).await?.is_none())
    {
        return Err(Error::invalid_param("new_room_user_id must be a local user"));
    }
    // The audit entry takes the parsed fields: the raw body may hold numbers that have no
    // canonical JSON form, which would fail the record after the deletion started.
    let audit_params = json!({
        "block": parsed.block,
        "purge": parsed.purge,
        "force_purge": parsed.force_purge,
        "new_room_user_id": parsed.new_room_user_id,
        "room_name": parsed.room_name,
        "message": parsed.message,
    });
    let request = Shutdown {
        block: parsed.block,
        purge: parsed.purge,
        force_purge: parsed.force_purge,
        new_room_user_id: parsed.new_room_user_id,
        room_name: parsed.room_name,
        message: parsed.message,
    };
    Ok((request, audit_params))
}

/// v2: answers with the task's ID; the deletion runs in the background.
async fn delete_room(
    State(state): State<AppState>,
    admin: Admin,
    PathParams(room_id): PathParams<String>,
    AdminJson(body): AdminJson<Value>,
) -> Result<Response> {
    let room_id = parse_room_id(&room_id)?;
    let (request, audit_params) = checked_request(&state, &room_id, body).await?;
    let target = room_id.to_string();
    let actor = admin.0.user_id.clone();
    let work = {
        let state = state.clone();
        async move {
            let job = {
                let state = state.clone();
                let room_id = room_id.clone();
                let actor = actor.clone();
                async move {
                    let mut report = ShutdownReport::default();
                    let outcome = shutdown(&state, &room_id, &actor, &request, &mut report).await;
                    (Some(report.to_json()), outcome)
                }
            };
            admin_tasks::start(&state, DELETE_ROOM, room_id.as_str(), actor.as_str(), job).await
        }
    };
    let delete_id = audited(&state, admin.actor(), audit_params, work, move |_| ("delete_room", Some(target))).await?;
    Ok(json(StatusCode::OK, json!({"delete_id": delete_id})))
}

/// v1 (`DELETE /v1/rooms/{roomId}`, `POST /v1/rooms/{roomId}/delete`): the same deletion,
/// answered with its report once done.
async fn delete_room_now(
    State(state): State<AppState>,
    admin: Admin,
    PathParams(room_id): PathParams<String>,
    AdminJson(body): AdminJson<Value>,
) -> Result<Response> {
    let room_id = parse_room_id(&room_id)?;
    let (request, audit_params) = checked_request(&state, &room_id, body).await?;
    let target = room_id.to_string();
    let actor = admin.0.user_id.clone();
    let work = {
        let state = state.clone();
        async move {
            let mut report = ShutdownReport::default();
            shutdown(&state, &room_id, &actor, &request, &mut report).await?;
            Ok(report)
        }
    };
    let report = audited(&state, admin.actor(), audit_params, work, move |_| ("delete_room", Some(target))).await?;
    Ok(json(StatusCode::OK, report.to_json()))
}

fn empty_report() -> Value {
    ShutdownReport::default().to_json()
}

fn status_json(task: &AdminTaskRow) -> Value {
    let mut body = json!({
        "delete_id": task.task_id,
        "status": task.status,
        "shutdown_room": task.result.clone().unwrap_or_else(empty_report),
    });
    if let Some(error) = &task.error {
        body["error"] = json!(error);
    }
    body
}

async fn status_by_room(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(room_id): PathParams<String>,
) -> Result<Response> {
    let room_id = parse_room_id(&room_id)?;
    let tasks = state.storage.admin_tasks_of_room(room_id.as_str(), DELETE_ROOM).await?;
    if tasks.is_empty() {
        return Err(Error::not_found(format!("No delete task for room_id '{room_id}' found")));
    }
    Ok(json(StatusCode::OK, json!({"results": tasks.iter().map(status_json).collect::<Vec<_>>()})))
}

async fn status_by_id(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(delete_id): PathParams<String>,
) -> Result<Response> {
    let task = state.storage.admin_task(&delete_id).await?.filter(|task| task.kind == DELETE_ROOM);
    let task = task.ok_or_else(|| Error::not_found(format!("delete id '{delete_id}' not found")))?;
    let mut body = status_json(&task);
    if let Some(object) = body.as_object_mut() {
        object.remove("delete_id");
    }
    Ok(json(StatusCode::OK, body))
}

async fn block_status(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(room_id): PathParams<String>,
) -> Result<Response> {
    let room_id = parse_room_id(&room_id)?;
    let body = match state.storage.room_blocked_by(room_id.as_str()).await? {
        Some(user_id) => json!({"block": true, "user_id": user_id}),
        None => json!({"block": false}),
    };
    Ok(json(StatusCode::OK, body))
}

#[derive(Debug, Deserialize)]
struct BlockBody {
    block: bool,
}

async fn set_block(
    State(state): State<AppState>,
    admin: Admin,
    PathParams(room_id): PathParams<String>,
    AdminJson(body): AdminJson<Value>,
) -> Result<Response> {
    let room_id = parse_room_id(&room_id)?;
    let parsed: BlockBody = serde_json::from_value(body).map_err(|e| Error::bad_json(e.to_string()))?;
    let target = room_id.to_string();
    let actor = admin.actor().to_owned();
    let work = {
        let state = state.clone();
        async move {
            if parsed.block {
                state.storage.block_room(room_id.as_str(), &actor, state.now_ms()).await?;
            } else {
                state.storage.unblock_room(room_id.as_str()).await?;
            }
            Ok(())
        }
    };
    let action = if parsed.block { "block_room" } else { "unblock_room" };
    audited(&state, admin.actor(), json!({"block": parsed.block}), work, move |_| (action, Some(target))).await?;
    Ok(json(StatusCode::OK, json!({"block": parsed.block})))
}
