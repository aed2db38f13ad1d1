//! Events as clients see them: the client-server event format with `unsigned` data.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Value, json};

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
    let event = ClientEvent { row, now_ms, with_room_id, transaction_id, relations: None };
    serde_json::to_value(event).unwrap_or(Value::Null)
}

/// A stored event in the client format, serialized straight from the stored JSON: /sync formats
/// hundreds of events per response, and building each as a `Value` first copied every field.
pub struct ClientEvent<'a> {
    pub row: &'a EventRow,
    pub now_ms: i64,
    pub with_room_id: bool,
    pub transaction_id: Option<&'a str>,
    /// Bundled aggregations, for `unsigned.m.relations`.
    pub relations: Option<&'a Value>,
}

impl ClientEvent<'_> {
    /// The event as ruma's typed raw JSON.
    pub fn to_raw<T>(&self) -> Result<ruma::serde::Raw<T>> {
        serde_json::value::to_raw_value(self)
            .map(ruma::serde::Raw::from_json)
            .map_err(|e| Error::internal(e.to_string()))
    }
}

impl Serialize for ClientEvent<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let json = &*self.row.json;
        let mut event = serializer.serialize_map(None)?;
        for field in CLIENT_FIELDS {
            if let Some(value) = json.get(*field) {
                event.serialize_entry(field, value)?;
            }
        }
        event.serialize_entry("event_id", &self.row.event_id)?;
        if self.with_room_id {
            event.serialize_entry("room_id", &self.row.room_id)?;
        }
        // Since v11 `redacts` lives in the content; clients of older spec versions read it at the top.
        if self.row.event_type == "m.room.redaction"
            && json.get("redacts").is_none()
            && let Some(redacts) = json["content"].get("redacts")
        {
            event.serialize_entry("redacts", redacts)?;
        }
        event.serialize_entry("unsigned", &Unsigned(self))?;
        event.end()
    }
}

/// `unsigned`: the event's age, what the server kept from the stored event, and what depends on
/// who asks.
struct Unsigned<'a>(&'a ClientEvent<'a>);

impl Serialize for Unsigned<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let ClientEvent { row, now_ms, transaction_id, relations, .. } = self.0;
        let mut unsigned = serializer.serialize_map(None)?;
        unsigned.serialize_entry("age", &(now_ms - row.origin_server_ts).max(0))?;
        let stored = &row.json["unsigned"];
        for field in ["redacted_because", "prev_content", "replaces_state", "prev_sender"] {
            if let Some(value) = stored.get(field) {
                unsigned.serialize_entry(field, value)?;
            }
        }
        if let Some(txn) = transaction_id {
            unsigned.serialize_entry("transaction_id", txn)?;
        }
        if let Some(relations) = relations {
            unsigned.serialize_entry("m.relations", relations)?;
        }
        unsigned.end()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn redaction_row() -> EventRow {
        EventRow {
            stream_ordering: 7,
            event_id: "$redaction".into(),
            room_id: "!r:example.org".into(),
            event_type: "m.room.redaction".into(),
            state_key: None,
            sender: "@alice:example.org".into(),
            depth: 7,
            origin_server_ts: 1_000,
            state_group_before: 3,
            state_group_after: 3,
            rejected_reason: None,
            json: json!({
                "type": "m.room.redaction", "sender": "@alice:example.org", "room_id": "!r:example.org",
                "origin_server_ts": 1_000, "depth": 7, "prev_events": ["$p"], "auth_events": ["$a"],
                "hashes": {"sha256": "x"}, "signatures": {"example.org": {}},
                "content": {"redacts": "$target", "reason": "spam"},
                "unsigned": {"age_ts": 5, "prev_sender": "@bob:example.org"},
            })
            .into(),
        }
    }

    #[test]
    fn the_client_format_keeps_client_fields_and_adds_unsigned_data() {
        let row = redaction_row();
        let relations = json!({"m.thread": {"count": 2}});
        let event = ClientEvent {
            row: &row,
            now_ms: 1_500,
            with_room_id: true,
            transaction_id: Some("txn1"),
            relations: Some(&relations),
        };
        let raw: ruma::serde::Raw<Value> = event.to_raw().unwrap();
        let serialized: Value = serde_json::from_str(raw.json().get()).unwrap();
        assert_eq!(
            serialized,
            json!({
                "type": "m.room.redaction", "sender": "@alice:example.org", "origin_server_ts": 1_000,
                "content": {"redacts": "$target", "reason": "spam"}, "redacts": "$target",
                "event_id": "$redaction", "room_id": "!r:example.org",
                "unsigned": {
                    "age": 500, "prev_sender": "@bob:example.org", "transaction_id": "txn1",
                    "m.relations": {"m.thread": {"count": 2}},
                },
            })
        );
        // The Value form is the same event without what only the raw form was given.
        let value = client_event(&row, 900, false, None);
        assert_eq!(value["unsigned"], json!({"age": 0, "prev_sender": "@bob:example.org"}));
        assert!(value.get("room_id").is_none() && value.get("hashes").is_none());
    }
}
