//! Rooms: creation, room lists and member lists.

use std::collections::BTreeMap;

use ruma::api::client::membership::{get_member_events, joined_members, joined_rooms};
use ruma::api::client::room::{Visibility, create_room, upgrade_room};
use ruma::{OwnedRoomId, OwnedUserId};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::create::{CreateRoom, Preset};
use crate::rooms::membership::require_joined;
use crate::rooms::{client_event, create, timeline};
use crate::state::AppState;

pub async fn create(state: AppState, request: Ruma<create_room::v3::Request>) -> Result<create_room::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    let preset = body.preset.as_ref().map(|preset| match preset.as_str() {
        "trusted_private_chat" => Ok(Preset::TrustedPrivateChat),
        "public_chat" => Ok(Preset::PublicChat),
        "private_chat" => Ok(Preset::PrivateChat),
        other => Err(Error::bad_json(format!("Unknown preset {other}"))),
    });
    let json = |raw: &serde_json::value::RawValue| serde_json::from_str::<serde_json::Value>(raw.get()).ok();
    let mut initial_state = Vec::new();
    for event in &body.initial_state {
        let value: serde_json::Value =
            serde_json::from_str(event.json().get()).map_err(|e| Error::bad_json(e.to_string()))?;
        let event_type = value["type"].as_str().ok_or_else(|| Error::bad_json("initial_state event without type"))?;
        let state_key = value["state_key"].as_str().unwrap_or_default();
        crate::rooms::retention::validate_policy_content(event_type, &value["content"])?;
        initial_state.push((event_type.to_owned(), state_key.to_owned(), value["content"].clone()));
    }
    let create = CreateRoom {
        preset: preset.transpose()?,
        is_public: body.visibility == Visibility::Public,
        room_alias_name: body.room_alias_name.clone(),
        name: body.name.clone(),
        topic: body.topic.clone(),
        invite: body.invite.clone(),
        is_direct: body.is_direct,
        room_version: body.room_version.clone(),
        creation_content: body.creation_content.as_ref().and_then(|c| json(c.json())),
        initial_state,
        power_level_content_override: body.power_level_content_override.as_ref().and_then(|c| json(c.json())),
    };
    let room_id = create::create_room(&state, &authed.user_id, create).await?;
    Ok(create_room::v3::Response::new(room_id))
}

pub async fn joined(state: AppState, request: Ruma<joined_rooms::v3::Request>) -> Result<joined_rooms::v3::Response> {
    let memberships = state.storage.memberships_of_user(request.authed()?.user_id.as_str()).await?;
    let rooms = memberships
        .into_iter()
        .filter(|m| m.membership == "join")
        .map(|m| OwnedRoomId::try_from(m.room_id).map_err(|e| Error::internal(e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    Ok(joined_rooms::v3::Response::new(rooms))
}

pub async fn members(
    state: AppState,
    request: Ruma<get_member_events::v3::Request>,
) -> Result<get_member_events::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    let Some(ceiling) = timeline::readable_up_to(&state, &body.room_id, &authed.user_id).await? else {
        crate::rooms::state::room(&state, body.room_id.as_str()).await?;
        return Err(Error::forbidden("You are not in this room"));
    };
    let position = match &body.at {
        Some(token) => timeline::parse_token(token)?.min(ceiling),
        None => ceiling,
    };
    let at_event = state.storage.room_event_at_or_before(body.room_id.as_str(), position).await?;
    let at_event = at_event.ok_or_else(|| Error::not_found("No state at that point"))?;
    let rows = crate::rooms::state::state_events(&state, at_event.state_group_after).await?;
    let now = state.now_ms();
    let chunk = rows
        .iter()
        .filter(|row| row.event_type == "m.room.member")
        .filter(|row| {
            let membership = row.json["content"]["membership"].as_str().unwrap_or_default();
            body.membership.as_ref().is_none_or(|m| m.as_str() == membership)
                && body.not_membership.as_ref().is_none_or(|m| m.as_str() != membership)
        })
        .map(|row| client_event::to_raw(&client_event::client_event(row, now, true, None)))
        .collect::<Result<Vec<_>>>()?;
    Ok(get_member_events::v3::Response::new(chunk))
}

pub async fn joined_members(
    state: AppState,
    request: Ruma<joined_members::v3::Request>,
) -> Result<joined_members::v3::Response> {
    let authed = request.authed()?;
    let room_id = &request.body.room_id;
    require_joined(&state, room_id, &authed.user_id).await?;
    let room = crate::rooms::state::room(&state, room_id.as_str()).await?;
    let rows = crate::rooms::state::state_events(&state, room.current_state_group()?).await?;
    let mut joined = BTreeMap::new();
    for row in rows.iter().filter(|row| row.event_type == "m.room.member") {
        if row.json["content"]["membership"] != "join" {
            continue;
        }
        let Some(user_id) = row.state_key.as_deref().and_then(|k| OwnedUserId::try_from(k).ok()) else { continue };
        let mut member = joined_members::v3::RoomMember::new();
        member.display_name = row.json["content"]["displayname"].as_str().map(str::to_owned);
        member.avatar_url = row.json["content"]["avatar_url"].as_str().map(Into::into);
        joined.insert(user_id, member);
    }
    Ok(joined_members::v3::Response::new(joined))
}

pub async fn upgrade(state: AppState, request: Ruma<upgrade_room::v3::Request>) -> Result<upgrade_room::v3::Response> {
    let body = &request.body;
    if !create::can_create(&body.new_version) {
        return Err(Error::matrix(
            http::StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::UnsupportedRoomVersion,
            format!("This server cannot create rooms of version {}", body.new_version),
        ));
    }
    let new_room =
        crate::rooms::upgrade::upgrade(&state, &body.room_id, &request.authed()?.user_id, body.new_version.clone())
            .await?;
    Ok(upgrade_room::v3::Response::new(new_room))
}
