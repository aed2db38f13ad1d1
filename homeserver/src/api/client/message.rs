//! Sending and reading events: `/send`, `/state`, `/messages`, `/event`.

use ruma::api::client::context::get_context;
use ruma::api::client::message::{get_message_events, send_message_event};
use ruma::api::client::redact::redact_event;
use ruma::api::client::room::{get_event_by_timestamp, get_room_event};
use ruma::api::client::state::{get_state_event_for_key, get_state_events, send_state_event};
use ruma::{RoomId, UserId};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::client_event::{ClientEvent, client_event, to_raw};
use crate::rooms::send::{ClientTxn, send_event, state_template};
use crate::rooms::timeline::{self, Direction, MessagesQuery};
use crate::state::AppState;

fn content_json(raw: &serde_json::value::RawValue) -> Result<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_str(raw.get()).map_err(|e| Error::bad_json(e.to_string()))?;
    if !value.is_object() {
        return Err(Error::bad_json("Event content must be a JSON object"));
    }
    Ok(value)
}

pub async fn send(
    state: AppState,
    request: Ruma<send_message_event::v3::Request>,
) -> Result<send_message_event::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    // Membership is enforced by the auth rules on the event itself.
    let template = federation::EventTemplate {
        event_type: body.event_type.to_string().into(),
        state_key: None,
        content: content_json(body.body.json())?,
        redacts: None,
    };
    let txn = ClientTxn { device_id: authed.device_id.to_string(), txn_id: body.txn_id.to_string() };
    let sent = send_event(&state, &body.room_id, &authed.user_id, template, Some(txn)).await?;
    crate::presence::active(&state, &authed.user_id).await?;
    Ok(send_message_event::v3::Response::new(sent.event_id))
}

pub async fn put_state(
    state: AppState,
    request: Ruma<send_state_event::v3::Request>,
) -> Result<send_state_event::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    let content = content_json(body.body.json())?;
    crate::rooms::retention::validate_policy_content(&body.event_type.to_string(), &content)?;
    if body.event_type.to_string() == "m.room.canonical_alias" {
        crate::rooms::directory::validate_canonical_alias(&state, &body.room_id, &content).await?;
    }
    let template = state_template(&body.event_type.to_string(), &body.state_key, content);
    let sent = send_event(&state, &body.room_id, &authed.user_id, template, None).await?;
    Ok(send_state_event::v3::Response::new(sent.event_id))
}

/// The state group a user may read: current for members, as of leaving for former members.
async fn readable_state_group(state: &AppState, room_id: &RoomId, user_id: &UserId) -> Result<i64> {
    let room = crate::rooms::state::room(state, room_id.as_str()).await?;
    let membership = state.storage.membership(room_id.as_str(), user_id.as_str()).await?;
    match membership {
        Some(m) if m.membership == "join" => room.current_state_group(),
        Some(m) if m.membership == "leave" || m.membership == "ban" => {
            let event =
                state.storage.event(&m.event_id).await?.ok_or_else(|| Error::internal("membership event missing"))?;
            Ok(event.state_group_after)
        }
        _ => Err(Error::forbidden("You are not joined to this room")),
    }
}

pub async fn get_state_for_key(
    state: AppState,
    request: Ruma<get_state_event_for_key::v3::Request>,
) -> Result<get_state_event_for_key::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    let group = readable_state_group(&state, &body.room_id, &authed.user_id).await?;
    let key = (body.event_type.to_string(), body.state_key.clone());
    let entries = state.storage.state_entries_at_group(group, std::slice::from_ref(&key)).await?;
    let event_id = entries.get(&key).ok_or_else(|| Error::not_found("Event not found"))?;
    let row = state.storage.event(event_id).await?.ok_or_else(|| Error::not_found("Event not found"))?;
    let value = match body.format {
        get_state_event_for_key::v3::StateEventFormat::Event => client_event(&row, state.now_ms(), true, None),
        _ => row.json["content"].clone(),
    };
    let raw = serde_json::value::to_raw_value(&value).map_err(|e| Error::internal(e.to_string()))?;
    Ok(get_state_event_for_key::v3::Response::new(raw))
}

pub async fn get_state(
    state: AppState,
    request: Ruma<get_state_events::v3::Request>,
) -> Result<get_state_events::v3::Response> {
    let authed = request.authed()?;
    let group = readable_state_group(&state, &request.body.room_id, &authed.user_id).await?;
    let rows = crate::rooms::state::state_events(&state, group).await?;
    let now = state.now_ms();
    let events = rows.iter().map(|row| to_raw(&client_event(row, now, true, None))).collect::<Result<Vec<_>>>()?;
    Ok(get_state_events::v3::Response::new(events))
}

pub async fn messages(
    state: AppState,
    request: Ruma<get_message_events::v3::Request>,
) -> Result<get_message_events::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    let dir = match body.dir {
        ruma::api::Direction::Backward => Direction::Backward,
        ruma::api::Direction::Forward => Direction::Forward,
    };
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX);
    let query = MessagesQuery { from: body.from.as_deref(), to: body.to.as_deref(), dir, limit, filter: &body.filter };
    let page = timeline::messages(&state, &authed.user_id, &body.room_id, query).await?;
    let mut response = get_message_events::v3::Response::new();
    response.start = page.start;
    response.end = page.end;
    let now_ms = state.now_ms();
    response.chunk = page
        .chunk
        .iter()
        .map(|row| {
            let relations = page.relations.get(&row.event_id);
            ClientEvent { row, now_ms, with_room_id: true, transaction_id: None, relations }.to_raw()
        })
        .collect::<Result<_>>()?;
    Ok(response)
}

pub async fn event(
    state: AppState,
    request: Ruma<get_room_event::v3::Request>,
) -> Result<get_room_event::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    let value = timeline::event(&state, &authed.user_id, &body.room_id, body.event_id.as_str()).await?;
    Ok(get_room_event::v3::Response::new(to_raw(&value)?))
}

pub async fn redact(state: AppState, request: Ruma<redact_event::v3::Request>) -> Result<redact_event::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    let txn = ClientTxn { device_id: authed.device_id.to_string(), txn_id: body.txn_id.to_string() };
    let event_id = crate::rooms::redaction::redact(
        &state,
        &body.room_id,
        &authed.user_id,
        body.event_id.as_str(),
        body.reason.as_deref(),
        Some(txn),
    )
    .await?;
    Ok(redact_event::v3::Response::new(event_id))
}

pub async fn context(state: AppState, request: Ruma<get_context::v3::Request>) -> Result<get_context::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(10);
    let context =
        timeline::context(&state, &authed.user_id, &body.room_id, body.event_id.as_str(), limit, &body.filter).await?;
    let mut response = get_context::v3::Response::new();
    response.start = Some(context.start);
    response.end = Some(context.end);
    response.event = Some(to_raw(&context.event)?);
    response.events_before = context.before.iter().map(to_raw).collect::<Result<_>>()?;
    response.events_after = context.after.iter().map(to_raw).collect::<Result<_>>()?;
    response.state = context.state.iter().map(to_raw).collect::<Result<_>>()?;
    Ok(response)
}

pub async fn timestamp_to_event(
    state: AppState,
    request: Ruma<get_event_by_timestamp::v1::Request>,
) -> Result<get_event_by_timestamp::v1::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    let dir = match body.dir {
        ruma::api::Direction::Backward => Direction::Backward,
        ruma::api::Direction::Forward => Direction::Forward,
    };
    let ts = i64::from(body.ts.0);
    let (event_id, origin_server_ts) =
        timeline::event_near_timestamp(&state, &authed.user_id, &body.room_id, ts, dir).await?;
    let event_id = ruma::OwnedEventId::try_from(event_id).map_err(|e| Error::internal(e.to_string()))?;
    let origin = ruma::MilliSecondsSinceUnixEpoch(ruma::UInt::try_from(origin_server_ts).unwrap_or_default());
    Ok(get_event_by_timestamp::v1::Response::new(event_id, origin))
}
