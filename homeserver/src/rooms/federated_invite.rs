//! Invites across servers: inviting a remote user (their server countersigns the invite over
//! `/invite`), and receiving invites for local users into rooms this server may not be in.

use federation::incoming::check_signed_by;
use federation::pdu::{add_signature, event_id_for, rules_for};
use ruma::api::federation::membership::{RawStrippedState, create_invite};
use ruma::{CanonicalJsonObject, RoomId, ServerName, UserId};
use serde_json::Value;

use super::federated_join::FEDERATED_ROOM_VERSIONS;
use super::head::RoomHead;
use super::incoming::verify_for_version;
use super::send::{Relay, accept_pdu, authorize_at_head, build_local_pdu, dag_position, state_template};
use crate::error::{Error, Result};
use crate::federation_sender::federation_form;
use crate::state::AppState;
use crate::storage::RemoteInvite;

/// Invites `target`, a user of another server, into a room we are in.
pub async fn invite_remote(
    state: &AppState,
    room_id: &RoomId,
    sender: &UserId,
    target: &UserId,
    content: Value,
) -> Result<()> {
    if !state.config.federation.enabled {
        return Err(Error::forbidden("Federation is disabled: only local users can be invited"));
    }
    let slot = state.rooms.room_lock(room_id);
    let mut guard = slot.lock().await;
    let head = state.rooms.settled_head(state, room_id, &mut guard).await?;
    let template = state_template("m.room.member", target.as_str(), content);
    let position = dag_position(head, sender, &template)?;
    let pdu = build_local_pdu(state, &head.version, room_id, sender, &template, &position)?;
    authorize_at_head(state, head, &pdu).await?;

    let stripped = invite_room_state(state, head, sender).await?;
    let event = serde_json::value::to_raw_value(&pdu.json).map_err(|e| Error::internal(e.to_string()))?;
    let request = create_invite::v2::Request::new(
        room_id.to_owned(),
        pdu.event_id.clone(),
        head.version.clone(),
        event,
        stripped,
    );
    let server = target.server_name();
    let answer = state.federation.send(server, &state.signing_key, request).await.map_err(Error::remote)?;

    // The same event back, now also signed by the invitee's server.
    let mut returned: CanonicalJsonObject =
        serde_json::from_str(answer.event.get()).map_err(|_| Error::remote_invalid(server))?;
    returned.remove("unsigned");
    let rules = rules_for(&head.version).map_err(super::send::unsupported_version)?;
    if event_id_for(&returned, &rules).ok().as_ref() != Some(&pdu.event_id) {
        return Err(Error::remote_invalid(server));
    }
    let signers = signer_keys(&returned, server);
    let keys = state.keyring.key_map(state, &signers, i64::from(pdu.origin_server_ts.0)).await?;
    check_signed_by(&returned, &rules, server.as_str(), &keys).map_err(|_| Error::remote_invalid(server))?;
    // Only the invitee's signature is taken from the answer: the rest of what it sent back may
    // differ from our event outside what signatures cover (its content, for one).
    let theirs = match returned.get("signatures") {
        Some(ruma::CanonicalJsonValue::Object(all)) => all.get(server.as_str()).cloned(),
        _ => None,
    }
    .ok_or_else(|| Error::remote_invalid(server))?;
    let mut ours = pdu.json.clone();
    if let Some(ruma::CanonicalJsonValue::Object(all)) = ours.get_mut("signatures") {
        all.insert(server.to_string(), theirs);
    }
    let signed = federation::Pdu::from_parts(pdu.event_id.clone(), ours, false).map_err(super::send::pdu_error)?;
    accept_pdu(state, head, signed, None, Relay::AllServers).await?;
    drop(guard);
    Ok(())
}

/// The key IDs `server` signed `object` with.
fn signer_keys(object: &CanonicalJsonObject, server: &ServerName) -> std::collections::BTreeMap<String, Vec<String>> {
    let key_ids = match object.get("signatures") {
        Some(ruma::CanonicalJsonValue::Object(signatures)) => match signatures.get(server.as_str()) {
            Some(ruma::CanonicalJsonValue::Object(keys)) => keys.keys().cloned().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    std::collections::BTreeMap::from([(server.to_string(), key_ids)])
}

/// The room state an invitee sees before joining (as full PDUs, per Matrix 1.16).
async fn invite_room_state(state: &AppState, head: &RoomHead, sender: &UserId) -> Result<Vec<RawStrippedState>> {
    let ids: Vec<String> =
        outsider_state_keys(sender).iter().filter_map(|key| head.state.get(key)).map(ToString::to_string).collect();
    stripped_pdus(state, &ids).await
}

/// The same for a room's current state as stored (a knock's answer).
pub(crate) async fn current_outsider_state(
    state: &AppState,
    room: &super::state::Room,
    member: &UserId,
) -> Result<Vec<RawStrippedState>> {
    let entries =
        state.storage.state_entries_at_group(room.current_state_group()?, &outsider_state_keys(member)).await?;
    let ids: Vec<String> = entries.into_values().collect();
    stripped_pdus(state, &ids).await
}

/// What someone outside a room is shown of it: its name, avatar, join rules and the like, and
/// one member event.
fn outsider_state_keys(member: &UserId) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> =
        crate::sync::INVITE_STATE_TYPES.iter().map(|t| ((*t).to_owned(), String::new())).collect();
    keys.push(("m.room.member".to_owned(), member.to_string()));
    keys
}

async fn stripped_pdus(state: &AppState, ids: &[String]) -> Result<Vec<RawStrippedState>> {
    let rows = state.storage.events_by_id(ids).await?;
    Ok(rows.iter().filter_map(|row| federation_form(&row.json)).map(RawStrippedState::Pdu).collect())
}

/// A received invite of one of our users: checked, countersigned, and (when we are not in the
/// room) recorded so the user sees it in `/sync`.
pub async fn receive_invite(
    state: &AppState,
    origin: &ServerName,
    request: &create_invite::v2::Request,
) -> Result<CanonicalJsonObject> {
    super::blocking::refuse_if_blocked(state, request.room_id.as_str()).await?;
    if !FEDERATED_ROOM_VERSIONS.contains(&request.room_version) {
        let kind = ruma::api::error::ErrorKind::IncompatibleRoomVersion(
            ruma::api::error::IncompatibleRoomVersionErrorData::new(request.room_version.clone()),
        );
        return Err(Error::matrix(http::StatusCode::BAD_REQUEST, kind, "Unsupported room version"));
    }
    let object: CanonicalJsonObject =
        serde_json::from_str(request.event.get()).map_err(|e| Error::bad_json(e.to_string()))?;
    let pdu = verify_for_version(state, &request.room_version, object).await?;
    let invitee = pdu.state_key.as_deref().and_then(|key| <&UserId>::try_from(key).ok());
    let is_invite = pdu.event_type.to_string() == "m.room.member" && pdu.content_value()["membership"] == "invite";
    let Some(invitee) = invitee.filter(|_| is_invite) else {
        return Err(Error::bad_json("Not an invite event"));
    };
    if pdu.event_id != request.event_id || pdu.room_id != request.room_id || pdu.sender.server_name() != origin {
        return Err(Error::bad_json("The event does not match the request"));
    }
    super::acl::check(state, &request.room_id, origin.as_str()).await?;
    if invitee.server_name() != state.server_name {
        return Err(Error::bad_json("The invitee is not a user of this server"));
    }
    let user = state.storage.user(invitee.as_str()).await?;
    if user.is_none_or(|u| u.deactivated) {
        return Err(Error::not_found("Unknown user"));
    }
    let rules = rules_for(&request.room_version).map_err(super::send::unsupported_version)?;
    let mut signed = pdu.json.clone();
    add_signature(&mut signed, state.server_name.as_str(), &state.signing_key, &rules)
        .map_err(|e| Error::internal(e.to_string()))?;

    if !super::membership::is_resident(state, &request.room_id).await? {
        record_remote_invite(state, request, &pdu, invitee, &signed).await?;
    }
    Ok(signed)
}

async fn record_remote_invite(
    state: &AppState,
    request: &create_invite::v2::Request,
    pdu: &federation::Pdu,
    invitee: &UserId,
    signed: &CanonicalJsonObject,
) -> Result<()> {
    let stripped: Vec<Value> = request.invite_room_state.iter().filter_map(stripped_of).collect();
    let creator = stripped
        .iter()
        .find(|e| e["type"] == "m.room.create")
        .and_then(|e| e["sender"].as_str())
        .unwrap_or(pdu.sender.as_str())
        .to_owned();
    let signed_pdu =
        federation::Pdu::from_parts(pdu.event_id.clone(), signed.clone(), false).map_err(super::send::pdu_error)?;
    let event = super::send::new_event(&signed_pdu, &signed_pdu.sender, 0, None)?;
    state
        .storage
        .store_remote_invite(&RemoteInvite {
            room_id: request.room_id.as_str(),
            room_version: request.room_version.as_str(),
            creator: &creator,
            now: state.now_ms(),
            event: &event,
            user_id: invitee.as_str(),
            membership: "invite",
            stripped_state: &Value::Array(stripped),
        })
        .await?;
    state.rooms.notify_change();
    Ok(())
}

/// One entry of `invite_room_state` in the stripped form clients get.
#[allow(deprecated)]
pub(crate) fn stripped_of(entry: &RawStrippedState) -> Option<Value> {
    let full: Value = match entry {
        RawStrippedState::Pdu(raw) => serde_json::from_str(raw.get()).ok()?,
        RawStrippedState::Stripped(raw) => serde_json::from_str(raw.json().get()).ok()?,
        _ => return None,
    };
    Some(serde_json::json!({
        "type": full.get("type")?,
        "state_key": full.get("state_key")?,
        "sender": full.get("sender")?,
        "content": full.get("content")?,
    }))
}
