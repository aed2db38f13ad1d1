//! The rows of a batch of events, written with one statement per table (each fed its rows as
//! one JSON parameter) instead of four to eight statements per event.
//!
//! Nothing in a batch reads what the batch writes, so all of it runs together: state groups
//! are numbered and chained as the batch is gathered ([`state_group_of`]; a state event's group
//! may build on the one before it in the same batch), and only a full snapshot reads the state
//! it copies, after writing what was gathered before it.

use std::collections::{HashMap, HashSet};

use sqlx::AnyConnection;

use super::JsonColumn::{Hex, Int, Text};
use super::Result;
use super::codec::Codec;
use super::flag;
use super::json_statements::{JsonStatements, hex};
use super::rooms::NewEvent;
use super::state_groups::{NewStateGroups, StateGroupNumbers};

/// Whether `event` is part of the room's timeline here: accepted and not an outlier. Other
/// events change nothing but the events table (and their transaction ID).
fn in_timeline(event: &NewEvent) -> bool {
    event.rejected_reason.is_none() && !event.outlier
}

/// Whether `event` brings a new state group (see [`state_group_of`]).
pub(super) fn has_state_group(event: &NewEvent) -> bool {
    event.state_key.is_some() && in_timeline(event)
}

/// The state group after `event`: for a state event in the timeline a new one, added to
/// `new_groups` (a delta on the group before it), for any other event the group before it.
pub(super) async fn state_group_of(
    tx: &mut AnyConnection,
    event: &NewEvent,
    numbers: &StateGroupNumbers,
    new_groups: &mut NewStateGroups,
) -> Result<i64> {
    match &event.state_key {
        Some(state_key) if has_state_group(event) => {
            let entry = (event.event_type.clone(), state_key.clone(), event.event_id.clone());
            let group = event.state_group_after.unwrap_or_else(|| numbers.next());
            new_groups.add(tx, &event.room_id, event.state_group_before, group, &entry).await
        }
        _ => Ok(event.state_group_before),
    }
}

/// One event of a batch: the event, its stream ordering and the state group after it.
pub(super) type Numbered<'a> = (&'a NewEvent, i64, i64);

/// Adds the writes of a batch of events (their state groups gathered apart) to `statements`.
/// Run, they leave the rows writing the events one after another would leave.
pub(super) fn queue_events(codec: &Codec, statements: &mut JsonStatements, events: &[Numbered<'_>]) {
    queue_event_rows(codec, statements, events);
    let timeline: Vec<Numbered<'_>> = events.iter().copied().filter(|(event, _, _)| in_timeline(event)).collect();
    let timeline_events: Vec<&NewEvent> = timeline.iter().map(|(event, _, _)| *event).collect();
    queue_extremities(statements, &timeline_events);
    queue_current_state(statements, &timeline);
    queue_memberships(statements, &timeline);
    let all: Vec<&NewEvent> = events.iter().map(|(event, _, _)| *event).collect();
    queue_txns(statements, &all);
    let numbered: Vec<(&NewEvent, i64)> = timeline.iter().map(|(event, ordering, _)| (*event, *ordering)).collect();
    queue_relations(statements, &numbered);
    queue_for_destinations(statements, &numbered);
}

fn queue_event_rows(codec: &Codec, statements: &mut JsonStatements, events: &[Numbered<'_>]) {
    let rows: Vec<_> = events
        .iter()
        .map(|(event, stream_ordering, state_group_after)| {
            (
                *stream_ordering,
                event.event_id.as_str(),
                event.room_id.as_str(),
                event.event_type.as_str(),
                event.state_key.as_deref(),
                event.sender.as_str(),
                event.depth,
                event.origin_server_ts,
                event.state_group_before,
                *state_group_after,
                event.rejected_reason.as_deref(),
                hex(&codec.encode(&event.event_id, &event.json)),
                flag(event.outlier),
            )
        })
        .collect();
    let engine = statements.engine();
    statements.push(&rows, |param| {
        format!(
            "INSERT INTO events (stream_ordering, event_id, room_id, event_type, state_key, sender, depth, \
             origin_server_ts, state_group_before, state_group_after, rejected_reason, json, outlier) {}",
            engine.json_table(param, &[Int, Text, Text, Text, Text, Text, Int, Int, Int, Int, Text, Hex, Int])
        )
    });
}

/// The batch's net change to the forward extremities: every event it cites stops being one, and
/// each of its events no later event of the batch cites becomes one.
fn queue_extremities(statements: &mut JsonStatements, events: &[&NewEvent]) {
    let written: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let cited: HashSet<(&str, &str)> =
        events.iter().flat_map(|e| e.prev_events.iter().map(|prev| (e.room_id.as_str(), prev.as_str()))).collect();
    let removed: Vec<(&str, &str)> = cited.iter().filter(|(_, prev)| !written.contains(prev)).copied().collect();
    let cited_ids: HashSet<&str> = cited.iter().map(|(_, prev)| *prev).collect();
    let added: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| !cited_ids.contains(e.event_id.as_str()))
        .map(|e| (e.room_id.as_str(), e.event_id.as_str()))
        .collect();
    let engine = statements.engine();
    statements.push(&removed, |param| {
        format!(
            "DELETE FROM forward_extremities WHERE (room_id, event_id) IN ({})",
            engine.json_table(param, &[Text, Text])
        )
    });
    statements.push(&added, |param| {
        format!("INSERT INTO forward_extremities (room_id, event_id) {}", engine.json_table(param, &[Text, Text]))
    });
}

/// Each room's current state group after the batch: that of its last state event (or of the
/// last event that resolved a fork). A message leaves the state as it was.
fn queue_current_state(statements: &mut JsonStatements, events: &[Numbered<'_>]) {
    let mut current: HashMap<&str, i64> = HashMap::new();
    for (event, _, state_group_after) in events {
        if let Some(resolved) = &event.resolved_current {
            current.insert(&event.room_id, resolved.state_group);
        } else if event.state_key.is_some() {
            current.insert(&event.room_id, *state_group_after);
        }
    }
    let rows: Vec<(&str, i64)> = current.into_iter().collect();
    let engine = statements.engine();
    statements.push(&rows, |param| {
        format!(
            "UPDATE rooms SET current_state_group = x.c1 FROM ({}) AS x WHERE rooms.room_id = x.c0",
            engine.json_table(param, &[Text, Int])
        )
    });
}

/// A member's row as a batch leaves it.
struct MemberRow<'a> {
    membership: &'a str,
    event_id: &'a str,
    stream_ordering: i64,
    /// The last join in the batch, if any.
    last_join: Option<i64>,
}

/// The membership rows the batch's member events leave: per member the last event's, with the
/// last join among them remembered (see [`super::rooms::upsert_membership`]).
fn queue_memberships(statements: &mut JsonStatements, events: &[Numbered<'_>]) {
    let mut latest: HashMap<(&str, &str), MemberRow<'_>> = HashMap::new();
    // Members in the order the batch first changes them: the same statement for the same batch.
    let mut order: Vec<(&str, &str)> = Vec::new();
    for (event, stream_ordering, _) in events {
        let changes: Vec<(&str, &str, &str)> = match (&event.resolved_current, &event.state_key) {
            (Some(resolved), _) => resolved
                .memberships
                .iter()
                .map(|(user, membership, id)| (user.as_str(), membership.as_str(), id.as_str()))
                .collect(),
            (None, Some(user)) if event.event_type == "m.room.member" => {
                let membership = event.json["content"]["membership"].as_str().unwrap_or("leave");
                vec![(user.as_str(), membership, event.event_id.as_str())]
            }
            _ => Vec::new(),
        };
        for (user, membership, event_id) in changes {
            let key = (event.room_id.as_str(), user);
            let joined = (membership == "join").then_some(*stream_ordering);
            let earlier_join = match latest.get(&key) {
                Some(row) => row.last_join,
                None => {
                    order.push(key);
                    None
                }
            };
            let row = MemberRow {
                membership,
                event_id,
                stream_ordering: *stream_ordering,
                last_join: joined.or(earlier_join),
            };
            latest.insert(key, row);
        }
    }
    let rows: Vec<_> = order
        .iter()
        .filter_map(|key| {
            let row = latest.get(key)?;
            Some((key.0, key.1, row.membership, row.event_id, row.stream_ordering, row.last_join))
        })
        .collect();
    let engine = statements.engine();
    statements.push(&rows, |param| {
        format!(
            "INSERT INTO memberships (room_id, user_id, membership, event_id, stream_ordering, forgotten, \
             last_join_ordering) SELECT c0, c1, c2, c3, c4, 0, c5 FROM ({}) AS x WHERE true ON CONFLICT (room_id, user_id) DO UPDATE SET \
             membership = excluded.membership, event_id = excluded.event_id, \
             stream_ordering = excluded.stream_ordering, forgotten = 0, \
             last_join_ordering = COALESCE(excluded.last_join_ordering, memberships.last_join_ordering)",
            engine.json_table(param, &[Text, Text, Text, Text, Int, Int])
        )
    });
}

fn queue_txns(statements: &mut JsonStatements, events: &[&NewEvent]) {
    let txns: Vec<(&str, &str, &str, &str)> = events
        .iter()
        .filter_map(|e| {
            let (user_id, device_id, txn_id) = e.txn.as_ref()?;
            Some((user_id.as_str(), device_id.as_str(), txn_id.as_str(), e.event_id.as_str()))
        })
        .collect();
    let engine = statements.engine();
    statements.push(&txns, |param| {
        format!(
            "INSERT INTO event_txns (user_id, device_id, txn_id, event_id) {}",
            engine.json_table(param, &[Text, Text, Text, Text])
        )
    });
}

/// Replies, edits, reactions and threads: the events that relate to another.
fn queue_relations(statements: &mut JsonStatements, events: &[(&NewEvent, i64)]) {
    let relations: Vec<_> = events
        .iter()
        .filter_map(|(event, stream_ordering)| {
            let (rel_type, parent) = super::relations::relation_of(event)?;
            Some((
                event.event_id.as_str(),
                event.room_id.as_str(),
                parent,
                rel_type,
                event.event_type.as_str(),
                event.sender.as_str(),
                *stream_ordering,
            ))
        })
        .collect();
    let engine = statements.engine();
    statements.push(&relations, |param| {
        format!(
            "INSERT INTO event_relations (event_id, room_id, relates_to_id, rel_type, event_type, sender, \
             stream_ordering) {} ON CONFLICT (event_id) DO NOTHING",
            engine.json_table(param, &[Text, Text, Text, Text, Text, Text, Int])
        )
    });
}

fn queue_for_destinations(statements: &mut JsonStatements, events: &[(&NewEvent, i64)]) {
    let queued: Vec<(&str, i64)> = events
        .iter()
        .flat_map(|(event, ordering)| event.destinations.iter().map(move |d| (d.as_str(), *ordering)))
        .collect();
    let engine = statements.engine();
    statements.push(&queued, |param| {
        format!(
            "INSERT INTO federation_outbox_pdus (destination, stream_ordering) {}",
            engine.json_table(param, &[Text, Int])
        )
    });
}

#[cfg(test)]
mod tests {
    use super::super::test_support;
    use super::*;

    fn message(room_id: &str, event_id: &str, prev_events: &[&str]) -> NewEvent {
        NewEvent {
            prev_events: prev_events.iter().map(|p| (*p).to_owned()).collect(),
            state_group_before: 7,
            state_group_after: None,
            ..test_support::message(room_id, event_id)
        }
    }

    async fn extremities(storage: &super::super::Storage, room_id: &str) -> Vec<String> {
        let mut ids: Vec<String> =
            storage.forward_extremities(room_id).await.unwrap().into_iter().map(|(id, _)| id).collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn a_run_of_messages_leaves_the_rows_one_by_one_writes_would() {
        for storage in test_support::engines().await {
            for room in ["!a:x", "!b:x", "!c:x"] {
                storage.create_room(room, "11", "@alice:x", false, false, 1).await.unwrap();
            }
            let mut tx = storage.write.begin().await.unwrap();
            // An extremity from before the run, which the run replaces.
            let before = message("!a:x", "$a0", &[]);
            super::super::rooms::insert_event_at(&storage.codec, &mut tx, &before, 1, &storage.state_group_numbers)
                .await
                .unwrap();

            let mut with_txn = message("!b:x", "$b2", &["$b1"]);
            with_txn.txn = Some(("@alice:x".into(), "DEV".into(), "t1".into()));
            let mut run = vec![
                message("!a:x", "$a1", &["$a0"]),
                message("!b:x", "$b1", &[]),
                message("!a:x", "$a2", &["$a1"]),
                // A fork: two children of $a1 both stay extremities.
                message("!a:x", "$a3", &["$a1"]),
                with_txn,
            ];
            // A chain longer than one statement's rows.
            let chain: Vec<String> = (0..40).map(|i| format!("$c{i}")).collect();
            for (i, id) in chain.iter().enumerate() {
                let prev: Vec<&str> = if i == 0 { vec![] } else { vec![chain[i - 1].as_str()] };
                run.push(message("!c:x", id, &prev));
            }
            let numbered: Vec<Numbered<'_>> =
                run.iter().zip(2..).map(|(event, ordering)| (event, ordering, 7)).collect();
            let mut statements = JsonStatements::new(storage.engine);
            queue_events(&storage.codec, &mut statements, &numbered);
            statements.execute(&mut tx).await.unwrap();
            tx.commit().await.unwrap();

            assert_eq!(extremities(&storage, "!a:x").await, vec!["$a2", "$a3"]);
            assert_eq!(extremities(&storage, "!b:x").await, vec!["$b2"]);
            assert_eq!(extremities(&storage, "!c:x").await, vec!["$c39"]);
            assert_eq!(storage.txn_event_id("@alice:x", "DEV", "t1").await.unwrap().as_deref(), Some("$b2"));
            let stored = storage.event("$c20").await.unwrap().expect("stored");
            assert_eq!((stored.stream_ordering, stored.room_id.as_str(), stored.state_key), (27, "!c:x", None));
            assert_eq!(stored.json["content"]["body"], "hi");
        }
    }

    /// Joins, a message, a leave and a topic in `room`, each state event on a reserved group.
    fn state_events(storage: &super::super::Storage, room: &str, empty: i64) -> Vec<NewEvent> {
        let mut events: Vec<NewEvent> = Vec::new();
        let mut before = empty;
        let steps = [
            ("m.room.member", Some("@bob:x"), "join"),
            ("m.room.member", Some("@carol:x"), "join"),
            ("m.room.message", None, ""),
            ("m.room.member", Some("@bob:x"), "leave"),
            ("m.room.topic", Some(""), ""),
        ];
        for (i, (event_type, state_key, membership)) in steps.into_iter().enumerate() {
            let id = format!("${room}{i}");
            let prev: Vec<String> = events.last().map(|e| e.event_id.clone()).into_iter().collect();
            let group = state_key.map(|_| storage.reserve_state_group());
            events.push(NewEvent {
                event_type: event_type.into(),
                state_key: state_key.map(str::to_owned),
                prev_events: prev,
                state_group_before: before,
                state_group_after: group,
                json: serde_json::json!({"event_id": id, "content": {"membership": membership, "topic": "t"}}),
                ..test_support::message(room, &id)
            });
            before = group.unwrap_or(before);
        }
        events
    }

    /// A member's row, with the room left out of its event ID and orderings from `first`.
    async fn member(
        storage: &super::super::Storage,
        room: &str,
        user: &str,
        first: i64,
    ) -> (String, String, i64, Option<i64>) {
        let m = storage.membership(room, user).await.unwrap().expect("a member");
        (m.membership, m.event_id.replace(room, ""), m.stream_ordering - first, m.last_join_ordering.map(|o| o - first))
    }

    #[tokio::test]
    async fn state_events_in_one_batch_leave_the_rows_one_by_one_writes_would() {
        for storage in test_support::engines().await {
            let mut written = Vec::new();
            for (room, one_batch) in [("!one:x", false), ("!all:x", true)] {
                storage.create_room(room, "11", "@alice:x", false, false, 1).await.unwrap();
                let empty = storage.create_empty_state_group(room).await.unwrap();
                let events = state_events(&storage, room, empty);
                let first = if one_batch { 100 } else { 200 };
                let groups = &storage.state_group_numbers;
                let mut tx = storage.write.begin().await.unwrap();
                if one_batch {
                    let mut numbered = Vec::new();
                    let mut new_groups = NewStateGroups::default();
                    for (event, ordering) in events.iter().zip(first..) {
                        let group = state_group_of(&mut tx, event, groups, &mut new_groups).await.unwrap();
                        numbered.push((event, ordering, group));
                    }
                    let mut statements = JsonStatements::new(storage.engine);
                    new_groups.queue(&mut statements);
                    queue_events(&storage.codec, &mut statements, &numbered);
                    statements.execute(&mut tx).await.unwrap();
                } else {
                    for (event, ordering) in events.iter().zip(first..) {
                        let codec = &storage.codec;
                        super::super::rooms::insert_event_at(codec, &mut tx, event, ordering, groups).await.unwrap();
                    }
                }
                tx.commit().await.unwrap();

                let current = storage.room(room).await.unwrap().and_then(|r| r.current_state_group);
                let state = storage.state_at_group(current.expect("a current state")).await.unwrap();
                let state: Vec<(String, String, String)> = state
                    .into_iter()
                    .map(|((t, k), id)| (t, k, id.replace(room, "")))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let extremities: Vec<String> =
                    extremities(&storage, room).await.into_iter().map(|id| id.replace(room, "")).collect();
                let bob = member(&storage, room, "@bob:x", first).await;
                let carol = member(&storage, room, "@carol:x", first).await;
                written.push((bob, carol, state, extremities));
            }
            assert_eq!(written[0], written[1]);
            let (bob, carol, state, extremities) = &written[1];
            // Bob left after joining: the leave is his row, the join remembered.
            assert_eq!(bob, &("leave".to_owned(), "$3".to_owned(), 3, Some(0)));
            assert_eq!(carol, &("join".to_owned(), "$1".to_owned(), 1, Some(1)));
            let types: Vec<&str> = state.iter().map(|(t, _, _)| t.as_str()).collect();
            assert_eq!(types, vec!["m.room.member", "m.room.member", "m.room.topic"]);
            assert_eq!(extremities, &vec!["$4".to_owned()]);
        }
    }

    #[tokio::test]
    async fn a_batch_longer_than_a_delta_chain_snapshots_the_state_it_builds_on() {
        for storage in test_support::engines().await {
            storage.create_room("!r:x", "11", "@alice:x", false, false, 1).await.unwrap();
            let mut before = storage.create_empty_state_group("!r:x").await.unwrap();
            // Each state event adds a key, so every snapshot must copy all the keys before it.
            let mut events = Vec::new();
            for i in 0..120 {
                let id = format!("$s{i}");
                let group = storage.reserve_state_group();
                events.push(NewEvent {
                    event_type: "org.example.state".into(),
                    state_key: Some(format!("k{i}")),
                    state_group_before: before,
                    state_group_after: Some(group),
                    ..test_support::message("!r:x", &id)
                });
                before = group;
            }
            let mut tx = storage.write.begin().await.unwrap();
            let mut new_groups = NewStateGroups::default();
            let mut numbered = Vec::new();
            for (event, ordering) in events.iter().zip(10..) {
                let group =
                    state_group_of(&mut tx, event, &storage.state_group_numbers, &mut new_groups).await.unwrap();
                numbered.push((event, ordering, group));
            }
            let mut statements = JsonStatements::new(storage.engine);
            new_groups.queue(&mut statements);
            queue_events(&storage.codec, &mut statements, &numbered);
            statements.execute(&mut tx).await.unwrap();
            tx.commit().await.unwrap();

            let state = storage.state_at_group(before).await.unwrap();
            assert_eq!(state.len(), 120);
            for i in 0..120 {
                let key = ("org.example.state".to_owned(), format!("k{i}"));
                assert_eq!(state.get(&key).map(String::as_str), Some(format!("$s{i}").as_str()));
            }
            let (longest, snapshots): (i64, i64) = sqlx::query_as(
                "SELECT MAX(chain_len), CAST(SUM(CASE WHEN chain_len = 0 THEN 1 ELSE 0 END) AS BIGINT) \
                 FROM state_groups WHERE room_id = '!r:x'",
            )
            .fetch_one(&storage.write)
            .await
            .unwrap();
            // The empty group and two snapshots (after 50 and 101 deltas), no chain past 50.
            assert_eq!((longest, snapshots), (50, 3));
        }
    }

    #[tokio::test]
    async fn the_writer_numbers_after_events_stored_outside_it() {
        for storage in test_support::engines().await {
            storage.create_room("!r:x", "11", "@alice:x", false, false, 1).await.unwrap();
            storage.create_room("!o:x", "11", "@alice:x", false, false, 1).await.unwrap();
            let first = storage.persist_event(&message("!r:x", "$m1", &[])).await.unwrap();
            // Another write path (a leave from a room we are not in) takes the next ordering.
            storage.record_remote_leave("!o:x", "@alice:x", &message("!o:x", "$leave", &[])).await.unwrap();
            let outside = storage.event("$leave").await.unwrap().expect("stored").stream_ordering;
            assert_eq!(outside, first.stream_ordering + 1);
            // The writer's remembered ordering is stale now: it must not reuse that one (the
            // other path forgets it; a batch that still collided would be retried one by one).
            let second = storage.persist_event(&message("!r:x", "$m2", &["$m1"])).await.unwrap();
            let third = storage.persist_event(&message("!r:x", "$m3", &["$m2"])).await.unwrap();
            assert_eq!((second.stream_ordering, third.stream_ordering), (outside + 1, outside + 2));
        }
    }
}
