//! Membership from other servers: `make_join`/`send_join` (v2), `make_leave`/`send_leave` (v2),
//! `make_knock`/`send_knock` and `/invite` (v2).

use ruma::api::federation::membership::{
    create_invite, create_join_event, create_knock_event, create_leave_event, prepare_join_event, prepare_knock_event,
    prepare_leave_event,
};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::federated_membership::make_membership;
use crate::rooms::{federated_invite, federated_join, federated_knock, federated_leave};
use crate::state::AppState;

pub async fn make_join(
    state: AppState,
    request: Ruma<prepare_join_event::v1::Request>,
) -> Result<prepare_join_event::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    // Servers that send no `ver` support only version 1.
    let supported = if body.ver.is_empty() { vec![ruma::RoomVersionId::V1] } else { body.ver.clone() };
    let (version, event) =
        make_membership(&state, origin, &body.room_id, &body.user_id, "join", Some(&supported)).await?;
    let raw = serde_json::value::to_raw_value(&event).map_err(|e| Error::internal(e.to_string()))?;
    let mut response = prepare_join_event::v1::Response::new(raw);
    response.room_version = Some(version);
    Ok(response)
}

pub async fn send_join(
    state: AppState,
    request: Ruma<create_join_event::v2::Request>,
) -> Result<create_join_event::v2::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let room_state =
        federated_join::send_join(&state, origin, &body.room_id, body.event_id.as_str(), &body.pdu).await?;
    Ok(create_join_event::v2::Response::new(room_state))
}

pub async fn invite(state: AppState, request: Ruma<create_invite::v2::Request>) -> Result<create_invite::v2::Response> {
    let origin = request.origin()?;
    let signed = federated_invite::receive_invite(&state, origin, &request.body).await?;
    let raw = serde_json::value::to_raw_value(&signed).map_err(|e| Error::internal(e.to_string()))?;
    Ok(create_invite::v2::Response::new(raw))
}

pub async fn make_leave(
    state: AppState,
    request: Ruma<prepare_leave_event::v1::Request>,
) -> Result<prepare_leave_event::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let (version, event) = make_membership(&state, origin, &body.room_id, &body.user_id, "leave", None).await?;
    let raw = serde_json::value::to_raw_value(&event).map_err(|e| Error::internal(e.to_string()))?;
    Ok(prepare_leave_event::v1::Response::new(Some(version), raw))
}

pub async fn send_leave(
    state: AppState,
    request: Ruma<create_leave_event::v2::Request>,
) -> Result<create_leave_event::v2::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    federated_leave::send_leave(&state, origin, &body.room_id, body.event_id.as_str(), &body.pdu).await?;
    Ok(create_leave_event::v2::Response::new())
}

pub async fn make_knock(
    state: AppState,
    request: Ruma<prepare_knock_event::v1::Request>,
) -> Result<prepare_knock_event::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let (version, event) =
        make_membership(&state, origin, &body.room_id, &body.user_id, "knock", Some(&body.ver)).await?;
    let raw = serde_json::value::to_raw_value(&event).map_err(|e| Error::internal(e.to_string()))?;
    Ok(prepare_knock_event::v1::Response::new(version, raw))
}

pub async fn send_knock(
    state: AppState,
    request: Ruma<create_knock_event::v1::Request>,
) -> Result<create_knock_event::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let stripped =
        federated_knock::send_knock(&state, origin, &body.room_id, body.event_id.as_str(), &body.pdu).await?;
    Ok(create_knock_event::v1::Response::new(stripped))
}
