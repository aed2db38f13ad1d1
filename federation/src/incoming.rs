//! Checks on a PDU received from another server, before it goes anywhere near a room: its
//! format for the room version, the signatures of every server that must sign it, and its
//! content hash (an event whose hash does not match is kept only in redacted form).

use std::collections::BTreeMap;

use ruma::CanonicalJsonObject;
use ruma::room_version_rules::RoomVersionRules;
use ruma::signatures::Verified;

use crate::pdu::{Pdu, PduError, event_id_for};
use crate::server_keys::KeyMap;

/// The servers whose signatures an event needs, with the key IDs each signed with.
pub fn required_signers(
    object: &CanonicalJsonObject,
    rules: &RoomVersionRules,
) -> Result<BTreeMap<String, Vec<String>>, PduError> {
    let servers = ruma::signatures::required_server_signatures_to_verify_event(object, &rules.signatures)
        .map_err(|e| PduError::Malformed(e.to_string()))?;
    let signatures = match object.get("signatures") {
        Some(ruma::CanonicalJsonValue::Object(map)) => map,
        _ => return Err(PduError::Malformed("no signatures".into())),
    };
    servers
        .into_iter()
        .map(|server| {
            let key_ids = match signatures.get(server.as_str()) {
                Some(ruma::CanonicalJsonValue::Object(keys)) => keys.keys().cloned().collect(),
                _ => return Err(PduError::Malformed(format!("not signed by {server}"))),
            };
            Ok((server.to_string(), key_ids))
        })
        .collect()
}

/// A received event that passed the checks.
#[derive(Debug)]
pub struct CheckedPdu {
    pub pdu: Pdu,
    /// The content hash did not match: the event was redacted before being kept.
    pub redacted: bool,
}

/// Checks a received event against `keys` (which must hold the keys of [`required_signers`]).
/// `unsigned` is dropped: it is outside the signatures and other servers' claims in it are not
/// trusted.
pub fn check_received_pdu(
    mut object: CanonicalJsonObject,
    rules: &RoomVersionRules,
    keys: &KeyMap,
) -> Result<CheckedPdu, PduError> {
    object.remove("unsigned");
    ruma::state_res::check_pdu_format(&object, &rules.event_format).map_err(PduError::Malformed)?;
    let verified = ruma::signatures::verify_event(keys, &object, rules)
        .map_err(|e| PduError::Malformed(format!("signature check failed: {e}")))?;
    let event_id = event_id_for(&object, rules)?;
    let redacted = verified == Verified::Signatures;
    if redacted {
        object = ruma::canonical_json::redact(object, &rules.redaction, None)
            .map_err(|e| PduError::Malformed(format!("cannot redact: {e}")))?;
    }
    Ok(CheckedPdu { pdu: Pdu::from_parts(event_id, object, false)?, redacted })
}

#[cfg(test)]
mod tests {
    use ruma::canonical_json::CanonicalJsonValue;
    use ruma::serde::Base64;
    use ruma::{MilliSecondsSinceUnixEpoch, RoomVersionId, UInt, owned_room_id, user_id};
    use serde_json::json;

    use super::*;
    use crate::ServerSigningKey;
    use crate::pdu::{DagPosition, EventTemplate, build_pdu, rules_for};

    pub(super) fn signed_event(key: &ServerSigningKey) -> CanonicalJsonObject {
        let template = EventTemplate {
            event_type: "m.room.message".into(),
            state_key: None,
            content: json!({"msgtype": "m.text", "body": "hello"}),
            redacts: None,
        };
        let position = DagPosition { prev_events: vec![], auth_events: vec![], depth: 3 };
        build_pdu(
            "remote.test",
            key,
            &RoomVersionId::V10,
            &owned_room_id!("!room:remote.test"),
            user_id!("@alice:remote.test"),
            &template,
            &position,
            MilliSecondsSinceUnixEpoch(UInt::from(5u32)),
        )
        .unwrap()
        .json
    }

    pub(super) fn key_map(key: &ServerSigningKey) -> KeyMap {
        let public = Base64::parse(key.public_key_base64()).unwrap();
        BTreeMap::from([("remote.test".to_owned(), BTreeMap::from([(key.key_id(), public)]))])
    }

    #[test]
    fn a_correctly_signed_event_passes_and_keeps_its_id() {
        let key = ServerSigningKey::generate();
        let object = signed_event(&key);
        let rules = rules_for(&RoomVersionId::V10).unwrap();
        let signers = required_signers(&object, &rules).unwrap();
        assert_eq!(signers, BTreeMap::from([("remote.test".to_owned(), vec![key.key_id()])]));
        let expected_id = event_id_for(&object, &rules).unwrap();
        let mut with_unsigned = object;
        with_unsigned.insert("unsigned".into(), CanonicalJsonValue::Object(Default::default()));
        let checked = check_received_pdu(with_unsigned, &rules, &key_map(&key)).unwrap();
        assert!(!checked.redacted);
        assert_eq!(checked.pdu.event_id, expected_id);
        assert!(!checked.pdu.json.contains_key("unsigned"));
        assert_eq!(checked.pdu.content_value()["body"], "hello");
    }

    #[test]
    fn a_changed_body_is_redacted_and_a_forged_signature_refused() {
        let key = ServerSigningKey::generate();
        let rules = rules_for(&RoomVersionId::V10).unwrap();

        // The content changed after signing: signatures (over the redacted form) still hold.
        let mut altered = signed_event(&key);
        let content = serde_json::from_value(json!({"msgtype": "m.text", "body": "changed"})).unwrap();
        altered.insert("content".into(), content);
        let checked = check_received_pdu(altered, &rules, &key_map(&key)).unwrap();
        assert!(checked.redacted);
        assert_eq!(checked.pdu.content_value(), json!({}));

        // A field covered by the signature changed: refused.
        let mut forged = signed_event(&key);
        forged.insert("sender".into(), "@mallory:remote.test".into());
        assert!(check_received_pdu(forged, &rules, &key_map(&key)).is_err());

        // Signed by some other key than the server's.
        let other = ServerSigningKey::generate();
        assert!(check_received_pdu(signed_event(&other), &rules, &key_map(&key)).is_err());
    }
}

/// Checks that `server` (besides the servers [`required_signers`] names) signed the event: the
/// invitee's server on an invite it returned.
pub fn check_signed_by(
    object: &CanonicalJsonObject,
    rules: &RoomVersionRules,
    server: &str,
    keys: &KeyMap,
) -> Result<(), PduError> {
    let mut redacted = ruma::canonical_json::redact(object.clone(), &rules.redaction, None)
        .map_err(|e| PduError::Malformed(format!("cannot redact: {e}")))?;
    redacted.remove("unsigned");
    if let Some(ruma::CanonicalJsonValue::Object(signatures)) = redacted.get_mut("signatures") {
        signatures.retain(|signer, _| signer == server);
        if signatures.is_empty() {
            return Err(PduError::Malformed(format!("not signed by {server}")));
        }
    }
    ruma::signatures::verify_json(keys, &redacted).map_err(|e| PduError::Malformed(format!("{server}: {e}")))
}

#[cfg(test)]
mod countersigning_tests {
    use ruma::RoomVersionId;

    use super::*;
    use crate::ServerSigningKey;
    use crate::pdu::{add_signature, rules_for};

    #[test]
    fn a_countersignature_verifies_and_keeps_the_event_id() {
        let rules = rules_for(&RoomVersionId::V10).unwrap();
        let origin_key = ServerSigningKey::generate();
        let mut object = tests::signed_event(&origin_key);
        let before = event_id_for(&object, &rules).unwrap();
        let invitee = ServerSigningKey::generate();
        add_signature(&mut object, "invitee.test", &invitee, &rules).unwrap();
        assert_eq!(event_id_for(&object, &rules).unwrap(), before);
        let public = ruma::serde::Base64::parse(invitee.public_key_base64()).unwrap();
        let keys = BTreeMap::from([("invitee.test".to_owned(), BTreeMap::from([(invitee.key_id(), public)]))]);
        check_signed_by(&object, &rules, "invitee.test", &keys).unwrap();
        // The origin's signature is still good too.
        check_received_pdu(object.clone(), &rules, &tests::key_map(&origin_key)).unwrap();
        // Someone else's key does not pass for the invitee's.
        let other = ServerSigningKey::generate();
        let wrong = BTreeMap::from([(
            "invitee.test".to_owned(),
            BTreeMap::from([(invitee.key_id(), ruma::serde::Base64::parse(other.public_key_base64()).unwrap())]),
        )]);
        assert!(check_signed_by(&object, &rules, "invitee.test", &wrong).is_err());
    }
}

#[cfg(test)]
mod redaction_tests {
    use ruma::canonical_json::CanonicalJsonValue;
    use ruma::{MilliSecondsSinceUnixEpoch, RoomVersionId, UInt, owned_room_id, user_id};
    use serde_json::json;

    use super::*;
    use crate::ServerSigningKey;
    use crate::pdu::{DagPosition, EventTemplate, build_pdu, rules_for};

    /// A create event whose content changed after signing, checked under `version`.
    fn tampered_create(version: &RoomVersionId) -> Result<CheckedPdu, PduError> {
        let key = ServerSigningKey::generate();
        let template = EventTemplate {
            event_type: "m.room.create".into(),
            state_key: Some(String::new()),
            content: json!({"creator": "@alice:remote.test", "room_version": version.as_str(), "m.federate": true}),
            redacts: None,
        };
        let position = DagPosition { prev_events: vec![], auth_events: vec![], depth: 1 };
        let mut object = build_pdu(
            "remote.test",
            &key,
            version,
            &owned_room_id!("!room:remote.test"),
            user_id!("@alice:remote.test"),
            &template,
            &position,
            MilliSecondsSinceUnixEpoch(UInt::from(1u32)),
        )
        .unwrap()
        .json;
        let mut content = match object.get("content") {
            Some(CanonicalJsonValue::Object(content)) => content.clone(),
            _ => unreachable!(),
        };
        content.insert("extra".into(), "added after signing".into());
        object.insert("content".into(), CanonicalJsonValue::Object(content));
        let public = ruma::serde::Base64::parse(key.public_key_base64()).unwrap();
        let keys = BTreeMap::from([("remote.test".to_owned(), BTreeMap::from([(key.key_id(), public)]))]);
        check_received_pdu(object, &rules_for(version).unwrap(), &keys)
    }

    #[test]
    fn a_hash_mismatch_redacts_by_each_room_versions_rules() {
        for version in [RoomVersionId::V3, RoomVersionId::V6, RoomVersionId::V9, RoomVersionId::V10] {
            let checked = tampered_create(&version).unwrap();
            assert!(checked.redacted, "{version}");
            // Up to v10 a create event keeps only `creator` when redacted, so the signature
            // still holds and the event is kept in that form.
            assert_eq!(checked.pdu.content_value(), json!({"creator": "@alice:remote.test"}), "{version}");
        }
        // v11 keeps the whole create content through redaction: the signature covers it, so a
        // changed create event is refused outright.
        assert!(tampered_create(&RoomVersionId::V11).is_err());
    }
}
