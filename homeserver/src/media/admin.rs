//! What the admin API does to media: delete (one, a user's, old or large), quarantine.

use super::delete;
use super::store::is_valid_media_id;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::MediaSelection;

/// Deletes local media items (metadata, content, thumbnails); returns the IDs that existed.
pub async fn delete_local(state: &AppState, media_ids: &[String]) -> Result<Vec<String>> {
    let mut deleted = Vec::new();
    for media_id in media_ids {
        if delete(state, media_id).await? {
            deleted.push(media_id.clone());
        }
    }
    Ok(deleted)
}

/// Deletes local media created before `before_ts` and larger than `size_gt` bytes.
pub async fn delete_old(state: &AppState, before_ts: i64, size_gt: i64, keep_profiles: bool) -> Result<Vec<String>> {
    let origin = state.server_name.as_str();
    let selection = MediaSelection { origin, before_ts, size_gt, keep_profiles };
    let mut ids = state.storage.select_media_for_deletion(&selection).await?;
    if keep_profiles {
        // User avatars are excluded by the query; room avatars live in event JSON.
        let prefix = format!("mxc://{origin}/");
        let room_avatars: std::collections::HashSet<String> = state
            .storage
            .room_avatar_urls()
            .await?
            .into_iter()
            .filter_map(|url| url.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        ids.retain(|id| !room_avatars.contains(id));
    }
    delete_local(state, &ids).await
}

/// Quarantines (`by` an admin) or releases (`None`) one media item of any origin we know.
pub async fn set_quarantine(state: &AppState, origin: &str, media_id: &str, by: Option<&str>) -> Result<()> {
    if !is_valid_media_id(media_id) || !state.storage.set_media_quarantine(origin, media_id, by).await? {
        return Err(Error::not_found("Media not found"));
    }
    Ok(())
}

/// Quarantines every upload of a local user; returns how many.
pub async fn quarantine_user_media(state: &AppState, user_id: &str, by: &str) -> Result<usize> {
    let origin = state.server_name.as_str();
    let mut count = 0;
    for media_id in state.storage.user_media_ids(origin, user_id).await? {
        if state.storage.set_media_quarantine(origin, &media_id, Some(by)).await? {
            count += 1;
        }
    }
    Ok(count)
}

/// Local media referenced by the room's events (`mxc://` URLs anywhere in their content),
/// each quarantined; returns how many were.
pub async fn quarantine_room_media(state: &AppState, room_id: &str, by: &str) -> Result<usize> {
    let mut count = 0;
    for (origin, media_id) in room_media(state, room_id).await? {
        if is_valid_media_id(&media_id) && state.storage.set_media_quarantine(&origin, &media_id, Some(by)).await? {
            count += 1;
        }
    }
    Ok(count)
}

/// Every `mxc://server/id` found in the content of the room's stored events.
async fn room_media(state: &AppState, room_id: &str) -> Result<std::collections::BTreeSet<(String, String)>> {
    let mut found = std::collections::BTreeSet::new();
    let mut after = i64::MIN;
    loop {
        let rows = state.storage.room_events(room_id, after, i64::MAX, 500, crate::storage::Order::OldestFirst).await?;
        let Some(last) = rows.last() else { break };
        after = last.stream_ordering;
        for row in &rows {
            collect_mxc(row.json.get("content").unwrap_or(&serde_json::Value::Null), &mut found);
        }
    }
    Ok(found)
}

fn collect_mxc(value: &serde_json::Value, found: &mut std::collections::BTreeSet<(String, String)>) {
    match value {
        serde_json::Value::String(text) => {
            if let Some((origin, media_id)) = text.strip_prefix("mxc://").and_then(|rest| rest.split_once('/')) {
                found.insert((origin.to_owned(), media_id.to_owned()));
            }
        }
        serde_json::Value::Array(values) => values.iter().for_each(|v| collect_mxc(v, found)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_mxc(v, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_media_urls_at_any_depth() {
        let mut found = std::collections::BTreeSet::new();
        let content = serde_json::json!({
            "url": "mxc://a.org/abcd", "info": {"thumbnail_url": "mxc://a.org/efgh"}, "body": "mxc:/nope",
        });
        collect_mxc(&content, &mut found);
        let ids: Vec<_> = found.into_iter().map(|(_, id)| id).collect();
        assert_eq!(ids, vec!["abcd", "efgh"]);
    }
}
