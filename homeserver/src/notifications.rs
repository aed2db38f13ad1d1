//! Notifications: every member's push rules evaluated on every event as it is accepted, and
//! the unread counts derived from the results.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use federation::Pdu;
use ruma::push::{Action, FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset};
use ruma::room_version_rules::{RoomPowerLevelsRules, RoomVersionRules};
use ruma::{Int, OwnedEventId, OwnedUserId, UInt};
use serde_json::{Value, json};

use crate::error::Result;
use crate::rooms::head::RoomHead;
use crate::state::AppState;
use crate::storage::PushAction;

/// Parsed push rules per user, so sends do not read and parse every member's rules. Entries are
/// dropped whenever a user's rules change.
#[derive(Default)]
pub struct RulesetCache(Mutex<HashMap<OwnedUserId, Arc<Ruleset>>>);

impl RulesetCache {
    fn get(&self, user_id: &OwnedUserId) -> Option<Arc<Ruleset>> {
        self.lock().get(user_id).cloned()
    }

    fn insert(&self, user_id: OwnedUserId, ruleset: Arc<Ruleset>) {
        let mut entries = self.lock();
        // Bounded: start over rather than grow without limit.
        if entries.len() >= 50_000 {
            entries.clear();
        }
        entries.insert(user_id, ruleset);
    }

    pub fn forget(&self, user_id: &str) {
        self.lock().retain(|cached, _| cached.as_str() != user_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedUserId, Arc<Ruleset>>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The recipients' push rules: from the cache, the rest read in one query (a join storm's new
/// members would otherwise cost a read each, under the room lock).
async fn rulesets(
    state: &AppState,
    recipients: &[(OwnedUserId, String)],
) -> Result<HashMap<OwnedUserId, Arc<Ruleset>>> {
    let mut rulesets = HashMap::with_capacity(recipients.len());
    let mut uncached = Vec::new();
    for (user_id, _) in recipients {
        match state.push_rules.get(user_id) {
            Some(cached) => {
                rulesets.insert(user_id.clone(), cached);
            }
            None => uncached.push(user_id),
        }
    }
    if !uncached.is_empty() {
        for (user_id, ruleset) in crate::push_rules::rulesets(state, &uncached).await? {
            let ruleset = Arc::new(ruleset);
            state.push_rules.insert(user_id.clone(), ruleset.clone());
            rulesets.insert(user_id, ruleset);
        }
    }
    Ok(rulesets)
}

/// Caches a user's push rules ahead of their first evaluation.
pub async fn warm_rules(state: &AppState, user_id: &ruma::UserId) -> Result<()> {
    rulesets(state, &[(user_id.to_owned(), String::new())]).await.map(drop)
}

/// The thread an event belongs to: its thread root, or `main`.
pub fn thread_of(content: &Value) -> String {
    let relates_to = &content["m.relates_to"];
    match (relates_to["rel_type"].as_str(), relates_to["event_id"].as_str()) {
        (Some("m.thread"), Some(root)) => root.to_owned(),
        _ => "main".to_owned(),
    }
}

/// The push actions of an event, to be stored with it: each member it may notify (as the room is
/// before the event) with the actions their push rules give.
pub async fn push_actions(
    state: &AppState,
    head: &mut RoomHead,
    pdu: &Pdu,
    rules: &RoomVersionRules,
) -> Result<Vec<PushAction>> {
    match audience(state, head, pdu, rules).await? {
        Some(audience) => evaluate(state, pdu, audience).await,
        None => Ok(Vec::new()),
    }
}

/// Who an event may notify, captured from the room as it was before the event: the joined
/// members (and the target of an invite) except the sender, with their display names.
struct Audience {
    recipients: Vec<(OwnedUserId, String)>,
    member_count: UInt,
    power_levels: Option<PushConditionPowerLevelsCtx>,
}

async fn audience(
    state: &AppState,
    head: &mut RoomHead,
    pdu: &Pdu,
    rules: &RoomVersionRules,
) -> Result<Option<Audience>> {
    let joined = joined_names(state, head).await?;
    let member_count = UInt::try_from(joined.len()).unwrap_or(UInt::MAX);
    let content = pdu.content_value();
    let mut recipients: Vec<(OwnedUserId, String)> =
        joined.iter().filter(|(user, _)| **user != pdu.sender).map(|(u, n)| (u.clone(), n.clone())).collect();
    let invited = pdu.state_key.as_deref().and_then(|key| OwnedUserId::try_from(key).ok());
    if pdu.event_type.to_string() == "m.room.member"
        && content["membership"] == "invite"
        && let Some(target) = invited
    {
        let name = crate::rooms::head::display_name(&target, &content);
        recipients.push((target, name));
    }
    if recipients.is_empty() {
        return Ok(None);
    }
    Ok(Some(Audience { recipients, member_count, power_levels: power_levels_context(head, rules) }))
}

/// The head's joined members with display names, read from the member events the first time.
async fn joined_names<'h>(state: &AppState, head: &'h mut RoomHead) -> Result<&'h BTreeMap<OwnedUserId, String>> {
    if head.joined_names.is_none() {
        let member_ids: Vec<OwnedEventId> =
            head.state.iter().filter(|((kind, _), _)| kind == "m.room.member").map(|(_, id)| id.clone()).collect();
        head.ensure_pdus(state, &member_ids).await?;
        let mut joined = BTreeMap::new();
        for member in member_ids.iter().filter_map(|id| head.pdus.get(id)) {
            let content = member.content_value();
            let Some(user) = member.state_key.as_deref().and_then(|key| OwnedUserId::try_from(key).ok()) else {
                continue;
            };
            if content["membership"] == "join" {
                let name = crate::rooms::head::display_name(&user, &content);
                joined.insert(user, name);
            }
        }
        head.joined_names = Some(joined);
    }
    Ok(head.joined_names.get_or_insert_default())
}

/// Evaluates each recipient's push rules on the event.
async fn evaluate(state: &AppState, pdu: &Pdu, audience: Audience) -> Result<Vec<PushAction>> {
    let mut event = json!({
        "type": pdu.event_type.to_string(),
        "content": pdu.content_value(),
        "sender": pdu.sender,
        "event_id": pdu.event_id,
        "room_id": pdu.room_id,
        "origin_server_ts": pdu.origin_server_ts,
    });
    if let Some(state_key) = &pdu.state_key {
        event["state_key"] = state_key.as_str().into();
    }
    let raw: ruma::serde::Raw<ruma::events::AnySyncTimelineEvent> = crate::rooms::client_event::to_raw(&event)?;
    // Flattened once for every recipient (`Ruleset::get_actions` flattens on each call).
    let flattened = FlattenedJson::from_raw(&raw);
    let thread_id = thread_of(&event["content"]);
    let rulesets = rulesets(state, &audience.recipients).await?;
    let mut actions = Vec::new();
    for (user_id, display_name) in audience.recipients {
        let Some(ruleset) = rulesets.get(&user_id) else { continue };
        let mut context =
            PushConditionRoomCtx::new(pdu.room_id.clone(), audience.member_count, user_id.clone(), display_name);
        context.power_levels = audience.power_levels.clone();
        let matched = first_matching_actions(ruleset, &flattened, &context).await;
        if !matched.iter().any(Action::should_notify) {
            continue;
        }
        actions.push(PushAction {
            user_id: user_id.to_string(),
            thread_id: thread_id.clone(),
            highlight: matched.iter().any(Action::is_highlight),
            actions: serde_json::to_value(matched).unwrap_or(Value::Null),
        });
    }
    Ok(actions)
}

/// The actions of the first rule in `ruleset` that applies to the event, as
/// `Ruleset::get_actions` gives them (the sender is never a recipient, so its own-event check is
/// not needed).
async fn first_matching_actions<'r>(
    ruleset: &'r Ruleset,
    event: &FlattenedJson,
    context: &PushConditionRoomCtx,
) -> &'r [Action] {
    for rule in ruleset {
        if rule.applies(event, context).await {
            return rule.actions();
        }
    }
    &[]
}

/// The room's power levels as push conditions need them (for `@room` notifications).
fn power_levels_context(head: &RoomHead, rules: &RoomVersionRules) -> Option<PushConditionPowerLevelsCtx> {
    let create = head.state.get(&("m.room.create".to_owned(), String::new())).and_then(|id| head.pdus.get(id))?;
    let mut creators = vec![create.sender.clone()];
    let create_content = create.content_value();
    for extra in create_content["additional_creators"].as_array().into_iter().flatten() {
        creators.extend(extra.as_str().and_then(|u| OwnedUserId::try_from(u).ok()));
    }
    let levels = head
        .state
        .get(&("m.room.power_levels".to_owned(), String::new()))
        .and_then(|id| head.pdus.get(id))
        .map(Pdu::content_value)
        .unwrap_or(Value::Null);
    let int = |value: &Value, default: i64| {
        let number = value.as_i64().or_else(|| value.as_str().and_then(|s| s.parse().ok())).unwrap_or(default);
        Int::new(number).unwrap_or_default()
    };
    let users = levels["users"]
        .as_object()
        .map(|users| {
            users
                .iter()
                .filter_map(|(u, level)| Some((OwnedUserId::try_from(u.as_str()).ok()?, int(level, 0))))
                .collect()
        })
        .unwrap_or_else(|| {
            if levels.is_null() { [(create.sender.clone(), Int::from(100))].into() } else { BTreeMap::new() }
        });
    let notifications = serde_json::from_value(levels["notifications"].clone()).unwrap_or_default();
    let power_rules = RoomPowerLevelsRules::new(&rules.authorization, creators);
    Some(PushConditionPowerLevelsCtx::new(users, int(&levels["users_default"], 0), notifications, power_rules))
}

/// Most notifications one `/notifications` page returns.
const MAX_PAGE: i64 = 100;

/// A page of the user's notifications, newest first, with the token for the next page. `from`
/// is a stream position from an earlier page.
pub async fn list(
    state: &AppState,
    user_id: &ruma::UserId,
    from: Option<&str>,
    limit: Option<u64>,
    only_highlights: bool,
) -> Result<(Vec<ruma::api::client::push::get_notifications::v3::Notification>, Option<String>)> {
    use ruma::api::client::push::get_notifications::v3::Notification;
    let before = match from {
        Some(token) => token.parse::<i64>().map_err(|_| crate::error::Error::invalid_param("Invalid from token"))?,
        None => i64::MAX,
    };
    let limit = limit.map_or(20, |l| i64::try_from(l).unwrap_or(MAX_PAGE)).clamp(1, MAX_PAGE);
    let rows = state.storage.notifications(user_id.as_str(), before, limit, only_highlights).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
    let events: HashMap<String, crate::storage::EventRow> =
        state.storage.events_by_id(&ids).await?.into_iter().map(|e| (e.event_id.clone(), e)).collect();
    let now = state.now_ms();
    let next = (i64::try_from(rows.len()).unwrap_or(0) == limit)
        .then(|| rows.last().map(|r| r.stream_ordering.to_string()))
        .flatten();
    let mut notifications = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(event) = events.get(&row.event_id) else { continue };
        let actions: Vec<Action> = serde_json::from_value(row.actions).unwrap_or_default();
        let raw =
            crate::rooms::client_event::to_raw(&crate::rooms::client_event::client_event(event, now, true, None))?;
        let room_id =
            ruma::OwnedRoomId::try_from(row.room_id).map_err(|e| crate::error::Error::internal(e.to_string()))?;
        let ts = ruma::MilliSecondsSinceUnixEpoch(UInt::try_from(event.origin_server_ts).unwrap_or_default());
        notifications.push(Notification::new(actions, raw, row.read, room_id, ts));
    }
    Ok((notifications, next))
}
