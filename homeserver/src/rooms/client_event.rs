//! Events as clients see them: the client-server event format with `unsigned` data.

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::storage::EventRow;

/// A JSON value as ruma's typed raw JSON (for response fields typed `Raw<…>`).
pub fn to_raw<T>(value: &Value) -> Result<ruma::serde::Raw<T>> {
    serde_json::value::to_raw_value(value).map(ruma::serde::Raw::from_json).map_err(|e| Error::internal(e.to_string()))
}

/// Fields of the stored PDU that clients receive.
const CLIENT_FIELDS: &[&str] = &["content", "origin_server_ts", "sender", "type", "state_key", "redacts"];

/// Formats a stored event for a client. `room_id` is included for endpoints outside /sync's room
/// map; `transaction_id` only for the device that sent it.
pub fn client_event(row: &EventRow, now_ms: i64, with_room_id: bool, transaction_id: Option<&str>) -> Value {
    let mut event = Map::new();
    for field in CLIENT_FIELDS {
        if let Some(value) = row.json.get(*field) {
            event.insert((*field).to_owned(), value.clone());
        }
    }
    event.insert("event_id".into(), json!(row.event_id));
    if with_room_id {
        event.insert("room_id".into(), json!(row.room_id));
    }
    // Since v11 `redacts` lives in the content; clients of older spec versions read it at the top.
    if row.event_type == "m.room.redaction"
        && !event.contains_key("redacts")
        && let Some(redacts) = row.json["content"].get("redacts")
    {
        event.insert("redacts".into(), redacts.clone());
    }
    let mut unsigned = Map::new();
    unsigned.insert("age".into(), json!((now_ms - row.origin_server_ts).max(0)));
    for field in ["redacted_because", "prev_content", "replaces_state", "prev_sender"] {
        if let Some(value) = row.json["unsigned"].get(field) {
            unsigned.insert(field.into(), value.clone());
        }
    }
    if let Some(txn) = transaction_id {
        unsigned.insert("transaction_id".into(), json!(txn));
    }
    event.insert("unsigned".into(), Value::Object(unsigned));
    Value::Object(event)
}

/// The stripped state shown with an invite: enough for a client to render the room.
pub fn stripped_state(row: &EventRow) -> Value {
    json!({
        "type": row.json["type"],
        "state_key": row.json["state_key"],
        "sender": row.json["sender"],
        "content": row.json["content"],
    })
}
