//! Message retention (MSC1763): each room's effective policy (the room's `m.room.retention`
//! event, else the defaults for its type of room, clamped to the allowed range), and how long a
//! redacted event's original must still be held. The purge itself is `retention_purge`.

use serde::Serialize;
use serde_json::Value;

use super::state::Room;
use crate::config::RetentionConfig;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::EventRow;

pub const RETENTION_EVENT: &str = "m.room.retention";
const ENCRYPTION_EVENT: &str = "m.room.encryption";

/// Where a room's lifetimes come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    /// Nothing applies: events are kept forever.
    #[default]
    None,
    /// The room's own `m.room.retention` (defaults fill a lifetime it leaves out).
    Room,
    /// `[retention.direct]`, the room being a direct chat.
    DirectDefault,
    /// `[retention.encrypted]`, the room having `m.room.encryption`.
    EncryptedDefault,
    /// `[retention]`'s server-wide default.
    ServerDefault,
}

/// A room's lifetimes in force, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Events younger than this are kept whatever `max_lifetime` says, and a redaction only
    /// hides their content until then.
    pub min_lifetime: Option<u64>,
    /// Events older than this are purged; `None` keeps them forever.
    pub max_lifetime: Option<u64>,
    pub source: PolicySource,
}

/// What a room is, for choosing its defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RoomKind {
    pub is_direct: bool,
    pub is_encrypted: bool,
}

/// The policy from the server's configuration, the room's `m.room.retention` content and its
/// kind (the direct-chat defaults come before the encrypted-room ones). Lifetimes are clamped to
/// the allowed range; a `max_lifetime` below `min_lifetime` is raised to it. With retention off
/// nothing expires.
pub fn effective_policy(config: &RetentionConfig, room_content: Option<&Value>, kind: RoomKind) -> Policy {
    if !config.enabled {
        return Policy::default();
    }
    let lifetime = |key: &str| room_content.and_then(|content| content.get(key)).and_then(Value::as_u64);
    let (room_min, room_max) = (lifetime("min_lifetime"), lifetime("max_lifetime"));
    let (default_min, default_max, default_source) = if kind.is_direct && config.direct.enabled {
        (config.direct.default_min_lifetime_ms, config.direct.default_max_lifetime_ms, PolicySource::DirectDefault)
    } else if kind.is_encrypted && config.encrypted.enabled {
        let encrypted = &config.encrypted;
        (encrypted.default_min_lifetime_ms, encrypted.default_max_lifetime_ms, PolicySource::EncryptedDefault)
    } else {
        (0, config.default_max_lifetime_ms, PolicySource::ServerDefault)
    };
    let (default_min, default_max) = (Some(default_min).filter(|&ms| ms > 0), Some(default_max).filter(|&ms| ms > 0));
    let source = match (room_min.or(room_max), default_min.or(default_max)) {
        (Some(_), _) => PolicySource::Room,
        (None, Some(_)) => default_source,
        (None, None) => PolicySource::None,
    };
    let clamp = |ms: u64| {
        let ms = ms.max(config.allowed_min_lifetime_ms);
        if config.allowed_max_lifetime_ms == 0 { ms } else { ms.min(config.allowed_max_lifetime_ms) }
    };
    let min_lifetime = room_min.or(default_min).map(clamp);
    let max_lifetime = room_max.or(default_max).map(clamp);
    let max_lifetime = match (min_lifetime, max_lifetime) {
        (Some(min), Some(max)) => Some(max.max(min)),
        (_, max) => max,
    };
    Policy { min_lifetime, max_lifetime, source }
}

/// Refuses an `m.room.retention` a client sends whose lifetimes are not whole milliseconds (a
/// bad value would be ignored, so the room would silently get the defaults).
pub fn validate_policy_content(event_type: &str, content: &Value) -> Result<()> {
    if event_type != RETENTION_EVENT {
        return Ok(());
    }
    for key in ["min_lifetime", "max_lifetime"] {
        let Some(value) = content.get(key) else { continue };
        // The canonical JSON integer range.
        if value.as_u64().is_none_or(|ms| ms > (1 << 53) - 1) {
            return Err(Error::bad_json(format!("{RETENTION_EVENT}: {key} must be a non-negative integer (ms)")));
        }
    }
    Ok(())
}

/// A room's policy with what it was made from.
#[derive(Debug, Clone)]
pub struct RoomPolicy {
    /// The room's `m.room.retention` content, if it has one.
    pub content: Option<Value>,
    pub kind: RoomKind,
    pub policy: Policy,
}

/// The effective policy of a room, in one query (its retention and encryption state events).
pub async fn room_policy(state: &AppState, room: &Room) -> Result<RoomPolicy> {
    let keys = [(RETENTION_EVENT, ""), (ENCRYPTION_EVENT, "")];
    let events = state.storage.state_events_at_group(room.current_state_group()?, &keys).await?;
    let content = events.iter().find(|e| e.event_type == RETENTION_EVENT).map(|e| e.json["content"].clone());
    let kind = RoomKind {
        is_direct: room.row.is_direct,
        is_encrypted: events.iter().any(|e| e.event_type == ENCRYPTION_EVENT),
    };
    let policy = effective_policy(&state.config.retention, content.as_ref(), kind);
    Ok(RoomPolicy { content, kind, policy })
}

/// Until when (ms) the original of an event being redacted must be held: its room's
/// `min_lifetime` after it was sent (a sender's clock ahead of ours counts as now), when that is
/// still ahead. `None` drops it at once. Reads nothing when retention is off.
pub async fn redaction_hold_until(state: &AppState, room: &Room, target: &EventRow) -> Result<Option<i64>> {
    // Nothing to hold: redacted already (by someone, or by a purge that kept it for the DAG).
    let already_redacted = target.json.pointer("/unsigned/redacted_because").is_some()
        || target.json["content"].as_object().is_none_or(|content| content.is_empty());
    if !state.config.retention.enabled || already_redacted {
        return Ok(None);
    }
    let Some(min_lifetime) = room_policy(state, room).await?.policy.min_lifetime else { return Ok(None) };
    let now = state.now_ms();
    let release_ts = target.origin_server_ts.min(now).saturating_add(i64::try_from(min_lifetime).unwrap_or(i64::MAX));
    Ok((release_ts > now).then_some(release_ts))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::RoomTypeRetention;

    const PLAIN: RoomKind = RoomKind { is_direct: false, is_encrypted: false };
    const DIRECT: RoomKind = RoomKind { is_direct: true, is_encrypted: false };

    fn config(default_max: u64, allowed_min: u64, allowed_max: u64) -> RetentionConfig {
        RetentionConfig {
            enabled: true,
            default_max_lifetime_ms: default_max,
            allowed_min_lifetime_ms: allowed_min,
            allowed_max_lifetime_ms: allowed_max,
            ..RetentionConfig::default()
        }
    }

    #[test]
    fn off_means_nothing_expires() {
        let off = RetentionConfig { enabled: false, ..config(1000, 0, 0) };
        assert_eq!(effective_policy(&off, Some(&json!({"max_lifetime": 5})), PLAIN), Policy::default());
    }

    #[test]
    fn the_room_overrides_the_default_within_the_allowed_range() {
        let config = config(10_000, 1_000, 100_000);
        let max = |content: Option<Value>| effective_policy(&config, content.as_ref(), PLAIN).max_lifetime;
        assert_eq!(effective_policy(&config, None, PLAIN).source, PolicySource::ServerDefault);
        assert_eq!(max(None), Some(10_000));
        assert_eq!(max(Some(json!({"max_lifetime": 5_000}))), Some(5_000));
        assert_eq!(max(Some(json!({"max_lifetime": 10}))), Some(1_000));
        assert_eq!(max(Some(json!({"max_lifetime": 1u64 << 40}))), Some(100_000));
        // Not a number: the default applies.
        assert_eq!(max(Some(json!({"max_lifetime": "soon"}))), Some(10_000));
    }

    #[test]
    fn min_lifetime_wins_over_a_shorter_max_lifetime() {
        let content = json!({"min_lifetime": 7_000, "max_lifetime": 2_000});
        let policy = effective_policy(&config(0, 0, 0), Some(&content), PLAIN);
        assert_eq!(policy, Policy { min_lifetime: Some(7_000), max_lifetime: Some(7_000), source: PolicySource::Room });
    }

    #[test]
    fn no_default_and_no_room_policy_keeps_forever() {
        let policy = effective_policy(&config(0, 0, 0), Some(&json!({"min_lifetime": 5})), PLAIN);
        assert_eq!(policy.max_lifetime, None);
        assert_eq!(effective_policy(&config(0, 0, 0), None, DIRECT).source, PolicySource::None);
    }

    #[test]
    fn only_whole_milliseconds_are_accepted_from_clients() {
        assert!(validate_policy_content(RETENTION_EVENT, &json!({"min_lifetime": 0, "max_lifetime": 5})).is_ok());
        assert!(validate_policy_content(RETENTION_EVENT, &json!({})).is_ok());
        for bad in [json!({"max_lifetime": "soon"}), json!({"min_lifetime": -1}), json!({"max_lifetime": 1.5})] {
            assert!(validate_policy_content(RETENTION_EVENT, &bad).is_err(), "{bad}");
        }
        assert!(validate_policy_content("m.room.topic", &json!({"max_lifetime": "soon"})).is_ok());
    }

    #[test]
    fn direct_chats_get_their_own_defaults_when_configured() {
        let direct =
            RoomTypeRetention { enabled: true, default_min_lifetime_ms: 2_000, default_max_lifetime_ms: 5_000 };
        let config = RetentionConfig { direct, ..config(60_000, 0, 0) };
        let dm = effective_policy(&config, None, DIRECT);
        assert_eq!(
            dm,
            Policy { min_lifetime: Some(2_000), max_lifetime: Some(5_000), source: PolicySource::DirectDefault }
        );
        assert_eq!(effective_policy(&config, None, PLAIN).max_lifetime, Some(60_000));
        // The room's own policy still wins; the direct default fills what it leaves out.
        let own = effective_policy(&config, Some(&json!({"max_lifetime": 9_000})), DIRECT);
        assert_eq!(own, Policy { min_lifetime: Some(2_000), max_lifetime: Some(9_000), source: PolicySource::Room });
        let off = RetentionConfig { direct: RoomTypeRetention { enabled: false, ..config.direct.clone() }, ..config };
        assert_eq!(effective_policy(&off, None, DIRECT).source, PolicySource::ServerDefault);
    }

    #[test]
    fn encrypted_rooms_get_theirs_after_direct_chats() {
        let rule = |max| RoomTypeRetention { enabled: true, default_min_lifetime_ms: 0, default_max_lifetime_ms: max };
        let config = RetentionConfig { direct: rule(5_000), encrypted: rule(8_000), ..config(60_000, 0, 0) };
        let encrypted = RoomKind { is_direct: false, is_encrypted: true };
        let policy = effective_policy(&config, None, encrypted);
        assert_eq!((policy.max_lifetime, policy.source), (Some(8_000), PolicySource::EncryptedDefault));
        let both = RoomKind { is_direct: true, is_encrypted: true };
        assert_eq!(effective_policy(&config, None, both).source, PolicySource::DirectDefault);
        assert_eq!(effective_policy(&config, None, PLAIN).max_lifetime, Some(60_000));
    }
}
