//! Membership changes of other servers' users that go through us (`make_join`/`send_join`,
//! `make_leave`/`send_leave`): templates, and accepting the signed events back.

use federation::Pdu;
use federation::pdu::{event_id_for, rules_for};
use ruma::{CanonicalJsonObject, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::Value;

use super::incoming::{accept_received, verify_received};
use super::send::{Relay, authorize_at_head, build_local_pdu, dag_position, state_template};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::EventRow;

/// `make_join`/`make_leave`: a template of `user_id`'s (of `origin`) membership event, if the
/// change would be allowed.
pub async fn make_membership(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    user_id: &UserId,
    membership: &str,
    supported_versions: Option<&[RoomVersionId]>,
) -> Result<(RoomVersionId, Value)> {
    if user_id.server_name() != origin {
        return Err(Error::forbidden("A server can only change the membership of its own users"));
    }
    // Joining and knocking servers say which room versions they speak.
    if let Some(supported) = supported_versions {
        let room = super::state::room(state, room_id.as_str()).await?;
        if !supported.contains(&room.version) {
            return Err(super::federated_join::incompatible(&room.version));
        }
    }
    super::acl::check(state, room_id, origin.as_str()).await?;
    if membership != "leave" {
        super::blocking::refuse_if_blocked(state, room_id.as_str()).await?;
    }
    let slot = state.rooms.room_lock(room_id);
    let mut guard = slot.lock().await;
    let head = state.rooms.settled_head(state, room_id, &mut guard).await?;
    if !head.has_joined_member_of(state.server_name.as_str()) {
        return Err(Error::not_found("This server has no members in the room"));
    }
    let template = state_template("m.room.member", user_id.as_str(), serde_json::json!({"membership": membership}));
    let position = dag_position(head, user_id, &template)?;
    // Built and signed like a local event only to run the auth rules; the user's server
    // signs the real one.
    let trial = build_local_pdu(state, &head.version, room_id, user_id, &template, &position)?;
    authorize_at_head(state, head, &trial).await?;
    let mut event = serde_json::to_value(&trial.json).map_err(|e| Error::internal(e.to_string()))?;
    if let Some(object) = event.as_object_mut() {
        object.remove("hashes");
        object.remove("signatures");
        object.insert("origin".into(), state.server_name.as_str().into());
    }
    Ok((head.version.clone(), event))
}

/// `send_join`/`send_leave`: checks that `event` is `origin`'s user's own `membership` event
/// for the request's room and ID, accepts it (relaying it to the other servers in the room)
/// and returns the stored event.
pub async fn accept_membership(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &str,
    event: &serde_json::value::RawValue,
    membership: &str,
) -> Result<EventRow> {
    super::acl::check(state, room_id, origin.as_str()).await?;
    if membership != "leave" {
        super::blocking::refuse_if_blocked(state, room_id.as_str()).await?;
    }
    // As in `make_membership`: only a server in the room can take a membership change into it.
    if !super::membership::is_resident(state, room_id).await? {
        return Err(Error::not_found("This server has no members in the room"));
    }
    let object: CanonicalJsonObject = serde_json::from_str(event.get()).map_err(|e| Error::bad_json(e.to_string()))?;
    let pdu = verify_received(state, room_id, object).await?;
    if pdu.event_id.as_str() != event_id || pdu.room_id != room_id {
        return Err(Error::bad_json("The event does not match the room and event ID of the request"));
    }
    let is_own_change = pdu.event_type.to_string() == "m.room.member"
        && pdu.state_key.as_deref() == Some(pdu.sender.as_str())
        && pdu.sender.server_name() == origin
        && pdu.content_value()["membership"] == membership;
    if !is_own_change {
        return Err(Error::bad_json(format!("Not a {membership} event of a user of the sending server")));
    }
    accept_received(state, pdu, Relay::AllExcept(origin.as_str())).await?;
    let row = state.storage.event(event_id).await?.ok_or_else(|| Error::internal("accepted event is missing"))?;
    if row.rejected_reason.is_some() {
        return Err(Error::forbidden(format!("The {membership} is not allowed")));
    }
    Ok(row)
}

/// Fills in a `make_join`/`make_leave` template with our content, hashes and signs it.
pub fn sign_membership_template(
    state: &AppState,
    version: &RoomVersionId,
    room_id: &RoomId,
    user_id: &UserId,
    template: &str,
    content: Value,
    membership: &str,
) -> Result<Pdu> {
    let mut event: Value = serde_json::from_str(template).map_err(|e| Error::bad_json(e.to_string()))?;
    let fits = event["type"] == "m.room.member"
        && event["state_key"] == user_id.as_str()
        && event["sender"] == user_id.as_str()
        && event["room_id"] == room_id.as_str()
        && event["content"]["membership"] == membership;
    if !fits {
        return Err(Error::custom(
            http::StatusCode::BAD_GATEWAY,
            "M_UNKNOWN",
            "The remote server sent a wrong membership template",
        ));
    }
    // Keep fields of the template's content we do not set (e.g. `join_authorised_via_users_server`).
    if let (Some(ours), Some(theirs)) = (content.as_object(), event["content"].as_object_mut()) {
        for (key, value) in ours {
            theirs.insert(key.clone(), value.clone());
        }
    }
    let object = event.as_object_mut().ok_or_else(|| Error::bad_json("template is not an object"))?;
    for field in ["event_id", "hashes", "signatures", "unsigned"] {
        object.remove(field);
    }
    object.insert("origin".into(), state.server_name.as_str().into());
    object.insert("origin_server_ts".into(), state.now_ms().into());
    let rules = rules_for(version).map_err(super::send::unsupported_version)?;
    let mut canonical = federation::signing::to_canonical_object(event).map_err(|e| Error::bad_json(e.to_string()))?;
    ruma::signatures::hash_and_sign_event(
        state.server_name.as_str(),
        state.signing_key.key_pair(),
        &mut canonical,
        &rules.redaction,
    )
    .map_err(|e| Error::bad_json(e.to_string()))?;
    let event_id = event_id_for(&canonical, &rules).map_err(super::send::pdu_error)?;
    Pdu::from_parts(event_id, canonical, false).map_err(super::send::pdu_error)
}

/// Tries `attempt` with each of `servers` but ours, in order, until one succeeds; the last
/// failure otherwise (`what` names the change for the logs and the error).
pub async fn through_first_server<F, Fut>(
    state: &AppState,
    servers: &[ruma::OwnedServerName],
    what: &str,
    attempt: F,
) -> Result<()>
where
    F: Fn(ruma::OwnedServerName) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut last_error = Error::not_found(format!("No server to {what} through"));
    for server in servers.iter().filter(|s| **s != state.server_name) {
        match attempt(server.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::info!(%server, what, error = %e, "this server could not do it");
                last_error = e;
            }
        }
    }
    Err(last_error)
}
