//! Persistent data units: building, hashing and signing room events, and parsing them back.
//!
//! A `Pdu` keeps both its parsed fields (for authorization and state resolution, through ruma's
//! `state_res::Event` trait) and the exact canonical JSON that was hashed and signed.

use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::events::TimelineEventType;
use ruma::room_version_rules::{EventIdFormatVersion, RoomVersionRules};
use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UInt, UserId,
};
use serde::Deserialize;
use serde_json::value::RawValue as RawJsonValue;

use crate::keys::ServerSigningKey;

/// The largest PDU the spec allows, in bytes of canonical JSON.
pub const MAX_PDU_BYTES: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum PduError {
    #[error("unsupported room version {0}")]
    UnsupportedRoomVersion(RoomVersionId),
    #[error("event is larger than {MAX_PDU_BYTES} bytes")]
    TooLarge,
    #[error("malformed event: {0}")]
    Malformed(String),
}

/// Rules for a room version we know, or an error.
pub fn rules_for(version: &RoomVersionId) -> Result<RoomVersionRules, PduError> {
    version.rules().ok_or_else(|| PduError::UnsupportedRoomVersion(version.clone()))
}

/// The parts of a new event chosen by the sender; the DAG fields are added by [`build_pdu`].
#[derive(Debug, Clone)]
pub struct EventTemplate {
    pub event_type: TimelineEventType,
    pub state_key: Option<String>,
    pub content: serde_json::Value,
    pub redacts: Option<OwnedEventId>,
}

/// Where in the room DAG a new event goes.
#[derive(Debug, Clone)]
pub struct DagPosition {
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub depth: u64,
}

/// A room event with its signed canonical JSON.
#[derive(Debug, Clone)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub event_type: TimelineEventType,
    pub state_key: Option<String>,
    pub content: Box<RawJsonValue>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub depth: u64,
    /// True when the event failed authorization (it is kept, never served as valid).
    pub rejected: bool,
    /// The full event as signed (for v3+ rooms without `event_id`).
    pub json: CanonicalJsonObject,
}

/// Builds, hashes and signs a new event in `room_id`.
#[allow(clippy::too_many_arguments)]
pub fn build_pdu(
    server_name: &str,
    key: &ServerSigningKey,
    room_version: &RoomVersionId,
    room_id: &RoomId,
    sender: &UserId,
    template: &EventTemplate,
    position: &DagPosition,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
) -> Result<Pdu, PduError> {
    let rules = rules_for(room_version)?;
    let mut event = serde_json::json!({
        "sender": sender,
        "type": template.event_type.to_string(),
        "content": template.content,
        "depth": position.depth,
        "origin_server_ts": origin_server_ts,
        "prev_events": position.prev_events,
        "auth_events": position.auth_events,
    });
    if rules.event_id_format == EventIdFormatVersion::V1 {
        return Err(PduError::UnsupportedRoomVersion(room_version.clone()));
    }
    // Since v12 the create event has no room ID: the room ID is derived from its event ID.
    let derives_room_id =
        rules.authorization.room_create_event_id_as_room_id && template.event_type == TimelineEventType::RoomCreate;
    if !derives_room_id {
        event["room_id"] = room_id.as_str().into();
    }
    if let Some(state_key) = &template.state_key {
        event["state_key"] = state_key.clone().into();
    }
    if let Some(redacts) = &template.redacts {
        // v11 moved `redacts` into the content; older versions keep it at the top level.
        if rules.redaction.content_field_redacts {
            event["content"]["redacts"] = redacts.as_str().into();
        } else {
            event["redacts"] = redacts.as_str().into();
        }
    }
    let mut object = crate::signing::to_canonical_object(event).map_err(|e| PduError::Malformed(e.to_string()))?;
    ruma::signatures::hash_and_sign_event(server_name, key.key_pair(), &mut object, &rules.redaction)
        .map_err(json_error)?;
    let event_id = event_id_for(&object, &rules)?;
    Pdu::from_parts(event_id, object, false)
}

/// The reference-hash event ID (room versions 3 and later).
pub fn event_id_for(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<OwnedEventId, PduError> {
    if rules.event_id_format == EventIdFormatVersion::V1 {
        let id =
            object.get("event_id").and_then(|v| v.as_str()).ok_or_else(|| PduError::Malformed("no event_id".into()))?;
        return EventId::parse(id).map_err(|e| PduError::Malformed(e.to_string()));
    }
    let hash = ruma::signatures::reference_hash(object, rules).map_err(json_error)?;
    EventId::parse(format!("${hash}")).map_err(|e| PduError::Malformed(e.to_string()))
}

fn json_error(e: ruma::signatures::JsonError) -> PduError {
    match e {
        ruma::signatures::JsonError::PduTooLarge => PduError::TooLarge,
        other => PduError::Malformed(other.to_string()),
    }
}

#[derive(Deserialize)]
struct PduFields {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    #[serde(rename = "type")]
    event_type: TimelineEventType,
    state_key: Option<String>,
    content: Box<RawJsonValue>,
    #[serde(default)]
    prev_events: Vec<serde_json::Value>,
    #[serde(default)]
    auth_events: Vec<serde_json::Value>,
    redacts: Option<OwnedEventId>,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    depth: UInt,
}

/// Event references are plain IDs since v3, `[id, hashes]` pairs before.
fn reference(value: &serde_json::Value) -> Result<OwnedEventId, PduError> {
    let id = match value {
        serde_json::Value::String(id) => id.as_str(),
        serde_json::Value::Array(pair) => pair.first().and_then(|v| v.as_str()).unwrap_or_default(),
        _ => "",
    };
    EventId::parse(id).map_err(|e| PduError::Malformed(format!("bad event reference: {e}")))
}

impl Pdu {
    /// Parses a stored or received event whose ID is already known.
    pub fn from_parts(event_id: OwnedEventId, json: CanonicalJsonObject, rejected: bool) -> Result<Self, PduError> {
        let value = serde_json::to_value(&json).map_err(|e| PduError::Malformed(e.to_string()))?;
        let fields: PduFields = serde_json::from_value(value).map_err(|e| PduError::Malformed(e.to_string()))?;
        let redacts = match fields.redacts {
            Some(id) => Some(id),
            None => json
                .get("content")
                .and_then(|c| match c {
                    CanonicalJsonValue::Object(content) => content.get("redacts"),
                    _ => None,
                })
                .and_then(|v| v.as_str())
                .and_then(|id| EventId::parse(id).ok()),
        };
        let room_id = match fields.room_id {
            Some(room_id) => room_id,
            // A v12 create event: the room ID is `!` and the event ID's reference hash.
            None if fields.event_type == TimelineEventType::RoomCreate => {
                OwnedRoomId::try_from(format!("!{}", &event_id.as_str()[1..]))
                    .map_err(|e| PduError::Malformed(format!("room ID from create event: {e}")))?
            }
            None => return Err(PduError::Malformed("missing room_id".into())),
        };
        Ok(Self {
            event_id,
            room_id,
            sender: fields.sender,
            event_type: fields.event_type,
            state_key: fields.state_key,
            content: fields.content,
            prev_events: fields.prev_events.iter().map(reference).collect::<Result<_, _>>()?,
            auth_events: fields.auth_events.iter().map(reference).collect::<Result<_, _>>()?,
            redacts,
            origin_server_ts: fields.origin_server_ts,
            depth: fields.depth.into(),
            rejected,
            json,
        })
    }

    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// The content as a JSON value.
    pub fn content_value(&self) -> serde_json::Value {
        serde_json::from_str(self.content.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        // A v12 create event carries no room ID; ours is derived from its event ID.
        self.json.contains_key("room_id").then_some(&*self.room_id)
    }

    fn sender(&self) -> &UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.event_type
    }

    fn content(&self) -> &RawJsonValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        self.rejected
    }
}

/// Adds `server`'s signature to an event signed by others (an invite the invitee's server
/// countersigns). Event signatures cover the redacted event, so the content hash is untouched.
pub fn add_signature(
    object: &mut CanonicalJsonObject,
    server_name: &str,
    key: &ServerSigningKey,
    rules: &RoomVersionRules,
) -> Result<(), PduError> {
    let mut redacted = ruma::canonical_json::redact(object.clone(), &rules.redaction, None)
        .map_err(|e| PduError::Malformed(format!("cannot redact: {e}")))?;
    redacted.remove("signatures");
    redacted.remove("unsigned");
    ruma::signatures::sign_json(server_name, key.key_pair(), &mut redacted).map_err(json_error)?;
    let ours = match redacted.get("signatures") {
        Some(CanonicalJsonValue::Object(signatures)) => signatures.get(server_name).cloned(),
        _ => None,
    }
    .ok_or_else(|| PduError::Malformed("signing produced no signature".into()))?;
    let signatures =
        object.entry("signatures".to_owned()).or_insert_with(|| CanonicalJsonValue::Object(Default::default()));
    let CanonicalJsonValue::Object(signatures) = signatures else {
        return Err(PduError::Malformed("`signatures` is not an object".into()));
    };
    signatures.insert(server_name.to_owned(), ours);
    Ok(())
}
