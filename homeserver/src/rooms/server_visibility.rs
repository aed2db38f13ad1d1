//! What another server may read of a room's history: the events its users could see under the
//! room's history visibility at each event. Events it may not see are given redacted (their
//! DAG fields stay, so it can still link the graph), as Synapse does.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::state::AppState;
use crate::storage::EventRow;

/// `rows` as `server` may see them.
pub async fn filter_for_server(state: &AppState, server: &str, rows: Vec<EventRow>) -> Result<Vec<serde_json::Value>> {
    let mut groups: Vec<i64> = rows.iter().map(|row| row.state_group_before).collect();
    groups.sort_unstable();
    groups.dedup();
    let states = state.storage.states_at_groups(&groups).await?;

    // The history visibility and this server's member events of every state involved.
    let theirs = |user_id: &str| super::head::server_of(user_id) == server;
    let mut wanted: HashSet<String> = HashSet::new();
    for map in states.values() {
        for ((event_type, state_key), event_id) in map {
            let member_of_theirs = event_type == "m.room.member" && theirs(state_key);
            if member_of_theirs || event_type == "m.room.history_visibility" {
                wanted.insert(event_id.clone());
            }
        }
    }
    let wanted: Vec<String> = wanted.into_iter().collect();
    let contents: HashMap<String, serde_json::Value> = state
        .storage
        .events_by_id(&wanted)
        .await?
        .into_iter()
        .map(|row| (row.event_id, row.json["content"].clone()))
        .collect();

    let visible_at = |group: i64| -> bool {
        // Where we do not know the state (an outlier's placeholder), nothing is shown in full.
        let Some(map) = states.get(&group) else { return false };
        let visibility = map
            .get(&("m.room.history_visibility".to_owned(), String::new()))
            .and_then(|id| contents.get(id))
            .and_then(|c| c["history_visibility"].as_str())
            .unwrap_or("shared");
        let memberships = map
            .iter()
            .filter(|((t, k), _)| t == "m.room.member" && theirs(k))
            .filter_map(|(_, id)| contents.get(id).and_then(|c| c["membership"].as_str()));
        match visibility {
            "world_readable" | "shared" => true,
            "invited" => memberships.into_iter().any(|m| m == "join" || m == "invite"),
            _ => memberships.into_iter().any(|m| m == "join"),
        }
    };

    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        // The event that makes a server's user a member is always theirs to see.
        let about_them = row.event_type == "m.room.member" && row.state_key.as_deref().is_some_and(theirs);
        if about_them || visible_at(row.state_group_before) {
            out.push(std::sync::Arc::unwrap_or_clone(row.json));
        } else {
            out.push(redacted(state, &row).await?);
        }
    }
    Ok(out)
}

/// The event pruned by the room version's redaction rules.
async fn redacted(state: &AppState, row: &EventRow) -> Result<serde_json::Value> {
    let room = super::state::room(state, &row.room_id).await?;
    let rules = federation::pdu::rules_for(&room.version).map_err(super::send::unsupported_version)?;
    let object = federation::signing::to_canonical_object(serde_json::Value::clone(&row.json))
        .map_err(|e| crate::error::Error::internal(e.to_string()))?;
    let pruned = ruma::canonical_json::redact(object, &rules.redaction, None)
        .map_err(|e| crate::error::Error::internal(e.to_string()))?;
    serde_json::to_value(pruned).map_err(|e| crate::error::Error::internal(e.to_string()))
}
