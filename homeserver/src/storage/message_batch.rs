//! Consecutive messages of one event-writer batch, written with one statement per table (each
//! fed its rows as one JSON parameter) instead of four or five statements per event.
//!
//! Only plain messages take this path: they leave the room state, current state and memberships
//! as they were, so the rows they write do not depend on each other beyond the forward
//! extremities, whose net change over the run is computed here.

use std::collections::HashSet;

use super::JsonColumn::{Hex, Int, Text};
use super::codec::Codec;
use super::flag;
use super::json_statements::{JsonStatements, hex};
use super::rooms::{NewEvent, Persisted};

/// Whether `event` is a plain timeline message: accepted, not an outlier, not state, not
/// joining forks. Only the tables [`queue_messages`] writes change for it.
pub(super) fn is_plain_message(event: &NewEvent) -> bool {
    event.rejected_reason.is_none() && !event.outlier && event.state_key.is_none() && event.resolved_current.is_none()
}

/// Adds the writes of plain messages (see [`is_plain_message`]), the first numbered
/// `first_ordering`, to `statements`. Run in order, they leave the rows
/// [`super::rooms::insert_event_at`] would leave, one event after another.
pub(super) fn queue_messages(
    codec: &Codec,
    statements: &mut JsonStatements,
    events: &[&NewEvent],
    first_ordering: i64,
) -> Vec<Persisted> {
    let numbered: Vec<(&NewEvent, i64)> = events.iter().copied().zip(first_ordering..).collect();
    queue_event_rows(codec, statements, &numbered);
    queue_extremities(statements, events);
    queue_txns(statements, events);
    queue_relations(statements, &numbered);
    queue_for_destinations(statements, &numbered);
    numbered
        .iter()
        .map(|(event, stream_ordering)| Persisted {
            stream_ordering: *stream_ordering,
            state_group_after: event.state_group_before,
        })
        .collect()
}

fn queue_event_rows(codec: &Codec, statements: &mut JsonStatements, events: &[(&NewEvent, i64)]) {
    // A message is neither state, rejected nor an outlier, and the state after it is the state
    // before it.
    let rows: Vec<_> = events
        .iter()
        .map(|(event, stream_ordering)| {
            (
                *stream_ordering,
                event.event_id.as_str(),
                event.room_id.as_str(),
                event.event_type.as_str(),
                None::<&str>,
                event.sender.as_str(),
                event.depth,
                event.origin_server_ts,
                event.state_group_before,
                event.state_group_before,
                None::<&str>,
                hex(&codec.encode(&event.event_id, &event.json)),
                flag(false),
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

/// The run's net change to the forward extremities: every event it cites stops being one, and
/// each of its events no later event of the run cites becomes one.
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
            let events: Vec<&NewEvent> = run.iter().collect();
            let mut statements = JsonStatements::new(storage.engine);
            let persisted = queue_messages(&storage.codec, &mut statements, &events, 2);
            statements.execute(&mut tx).await.unwrap();
            tx.commit().await.unwrap();

            let orderings: Vec<i64> = persisted.iter().map(|p| p.stream_ordering).collect();
            assert_eq!(orderings, (2..2 + run.len() as i64).collect::<Vec<_>>());
            assert!(persisted.iter().all(|p| p.state_group_after == 7));
            assert_eq!(extremities(&storage, "!a:x").await, vec!["$a2", "$a3"]);
            assert_eq!(extremities(&storage, "!b:x").await, vec!["$b2"]);
            assert_eq!(extremities(&storage, "!c:x").await, vec!["$c39"]);
            assert_eq!(storage.txn_event_id("@alice:x", "DEV", "t1").await.unwrap().as_deref(), Some("$b2"));
            let stored = storage.event("$c20").await.unwrap().expect("stored");
            assert_eq!((stored.stream_ordering, stored.room_id.as_str(), stored.state_key), (27, "!c:x", None));
            assert_eq!(stored.json["content"]["body"], "hi");
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
