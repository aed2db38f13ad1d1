//! Group commit for events: one task writes every event, committing all requests that queued up
//! while the previous transaction ran in a single transaction. Each commit (an fsync on SQLite)
//! is shared by many events, and stream orderings are assigned in commit order.

use std::sync::Arc;

use sqlx::AnyPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::cache::Generation;
use super::codec::Codec;
use super::event_batch::{Numbered, has_state_group, queue_events, state_group_of};
use super::json_statements::JsonStatements;
use super::notifications::{RECENT_PUSH_ACTIONS_MOVED_AT, move_recent_push_actions};
use super::rooms::StateMap;
use super::rooms::{EventRow, NewEvent, NextOrdering, Persisted, next_stream_ordering};
use super::state_groups::{NewStateGroups, StateGroupNumbers};
use super::{Engine, EventCache, Result, StateCache, StorageError};
use crate::metrics::SharedHistogram;

/// Most events committed in one transaction.
const MAX_BATCH: usize = 256;
/// Requests that may wait for the writer before senders are slowed down.
const QUEUE_DEPTH: usize = 4096;
/// How long a batch waits for more events under load (the batch before it held more than one)
/// before it is written. A commit writes every page it touched in full, and the pages that
/// events share (the rooms' ends of their indexes) are the same for one event or twenty: fewer,
/// larger commits write less and cost the writer less per event. A lone event is written at
/// once.
const LINGER: std::time::Duration = std::time::Duration::from_micros(700);

struct Job {
    event: NewEvent,
    reply: oneshot::Sender<Result<Persisted>>,
}

#[derive(Clone, Debug)]
pub(super) struct EventWriter {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("event_id", &self.event.event_id).finish()
    }
}

impl EventWriter {
    /// Starts the writer (on SQLite, on a thread of its own). `order` is held while writing so
    /// other writers of the same counters (state groups) do not interleave.
    /// Committed events go into `cache`: the newest events are what syncs read next.
    pub(super) fn spawn(
        engine: Engine,
        pool: AnyPool,
        codec: Codec,
        order: Arc<Mutex<()>>,
        numbers: Numbers,
        latency: Arc<SharedHistogram>,
        cache: Arc<EventCache>,
    ) -> Self {
        let (jobs, receiver) = mpsc::channel(QUEUE_DEPTH);
        let stages_push_actions = engine.stages_push_actions();
        // Only the SQLite writer has a thread of its own to wait on (see `linger`).
        let lingers = engine == Engine::Sqlite;
        let writer = Writer { engine, pool, codec, order, numbers, latency, cache, stages_push_actions, lingers };
        if engine != Engine::Sqlite {
            // PostgreSQL connections are driven by the shared runtime's I/O driver: a writer on
            // a runtime of its own added a wake-up between the two to every statement.
            tokio::spawn(run(writer, receiver));
            return Self { jobs };
        }
        // On SQLite, a thread of its own: each of a batch's statements is a hand-off to the
        // connection's worker thread and back, and on the shared runtime the writer then queued
        // behind request handlers, so the one serial step of every send waited most of the
        // time it was busy.
        let started = std::thread::Builder::new().name("event-writer".into()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(run(writer, receiver)),
                // Every write then fails with "the event writer has stopped".
                Err(e) => tracing::error!(error = %e, "the event writer cannot start"),
            }
        });
        if let Err(e) = started {
            tracing::error!(error = %e, "the event writer cannot start");
        }
        Self { jobs }
    }

    pub(super) async fn persist(&self, event: NewEvent) -> Result<Persisted> {
        self.enqueue(event, None).await?.committed().await
    }

    /// Queues an event behind every event queued before it; it is committed in that order, and
    /// `shared_state` then goes into the state cache.
    pub(super) async fn enqueue(&self, event: NewEvent, shared_state: Option<SharedState>) -> Result<QueuedEvent> {
        let (reply, response) = oneshot::channel();
        self.jobs.send(Job { event, reply }).await.map_err(|_| writer_gone())?;
        Ok(QueuedEvent { response, shared_state })
    }
}

/// An event handed to the writer, not yet committed.
#[derive(Debug)]
pub struct QueuedEvent {
    response: oneshot::Receiver<Result<Persisted>>,
    /// What goes into the state cache once the event is committed.
    shared_state: Option<SharedState>,
}

/// The full state after a state event, from its sender's room head, for the state cache.
#[derive(Debug)]
pub(super) struct SharedState {
    pub(super) cache: Arc<StateCache>,
    /// Taken before the write: a purge meanwhile keeps the state out.
    pub(super) generation: Generation,
    pub(super) state_group_before: i64,
    pub(super) state: StateMap,
}

impl QueuedEvent {
    /// Waits for the commit (or the failure) of the event's transaction.
    pub async fn committed(self) -> Result<Persisted> {
        let persisted = self.response.await.map_err(|_| writer_gone())??;
        if let Some(shared) = self.shared_state
            && persisted.state_group_after != shared.state_group_before
            && !shared.state.is_empty()
        {
            let entry = (persisted.state_group_after, Arc::new(shared.state));
            shared.cache.insert_read(shared.generation, [entry]);
        }
        Ok(persisted)
    }
}

fn writer_gone() -> StorageError {
    StorageError::Corrupt("the event writer has stopped".into())
}

/// The counters the writer numbers events and state groups from, shared with the storage's
/// other writers.
pub(super) struct Numbers {
    pub(super) next_ordering: Arc<NextOrdering>,
    pub(super) state_groups: Arc<StateGroupNumbers>,
}

struct Writer {
    engine: Engine,
    pool: AnyPool,
    codec: Codec,
    order: Arc<Mutex<()>>,
    numbers: Numbers,
    latency: Arc<SharedHistogram>,
    cache: Arc<EventCache>,
    /// Whether this engine writes push actions to `recent_push_actions`, to be moved.
    stages_push_actions: bool,
    /// Whether batches wait for more events under load ([`LINGER`]).
    lingers: bool,
}

async fn run(writer: Writer, mut receiver: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Push actions written to `recent_push_actions` since they were last moved. Where the engine
    // stages them they are counted as due at start, so the first batch also moves what an
    // earlier run left there.
    let mut recent_push_actions = if writer.stages_push_actions { RECENT_PUSH_ACTIONS_MOVED_AT } else { 0 };
    let mut lost = LostGroups::default();
    let mut previous_batch = 0;
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if writer.lingers && previous_batch > 1 {
            linger(&mut receiver, &mut batch);
        }
        previous_batch = batch.len();
        lost.fail_dependents(&mut batch);
        if batch.is_empty() {
            continue;
        }
        let _order = writer.order.lock().await;
        if writer.stages_push_actions {
            recent_push_actions += batch.iter().map(|job| job.event.push_actions.len()).sum::<usize>();
        }
        let started = std::time::Instant::now();
        // Taken before the write: a change to cached events meanwhile keeps these out.
        let generation = writer.cache.generation();
        let written = write_batch(&writer, &batch).await;
        writer.latency.observe(started.elapsed());
        match written {
            Ok(results) => {
                // Cached before anyone hears of the events, so no later change can be overtaken.
                let mut replies = Vec::with_capacity(batch.len());
                let committed = batch.drain(..).zip(results).map(|(job, persisted)| {
                    replies.push((job.reply, persisted));
                    let row = committed_row(job.event, persisted);
                    (row.event_id.clone(), row)
                });
                writer.cache.insert_read(generation, committed.collect::<Vec<_>>());
                for (reply, persisted) in replies {
                    let _ = reply.send(Ok(persisted));
                }
            }
            // One bad event must not fail its neighbours: retry each on its own.
            Err(_) => {
                for job in batch.drain(..) {
                    let result = match lost.dependent(&job.event) {
                        Some(e) => Err(e),
                        None => write_batch(&writer, std::slice::from_ref(&job)).await.map(|mut r| r.remove(0)),
                    };
                    if result.is_err() {
                        lost.add(&job.event);
                    }
                    let _ = job.reply.send(result);
                }
            }
        }
        // After the replies, so no sender waits for it; under the order lock, so no purge of
        // push actions runs meanwhile.
        if recent_push_actions >= RECENT_PUSH_ACTIONS_MOVED_AT {
            // Either way the count starts again: a failed move is retried after as many more rows,
            // not after every batch (the rows stay where readers find them meanwhile).
            recent_push_actions = 0;
            if let Err(e) = move_recent_push_actions(&writer.pool).await {
                tracing::warn!(error = %e, "moving recent push actions failed");
            }
        }
    }
}

/// Adds the jobs that arrive within [`LINGER`] to `batch`, up to a full batch. It sleeps the
/// writer's own thread, in slices shorter than the runtime's timers could (their resolution is
/// a millisecond); nothing of the writer's is in flight meanwhile.
fn linger(receiver: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    const SLICE: std::time::Duration = std::time::Duration::from_micros(100);
    let deadline = std::time::Instant::now() + LINGER;
    loop {
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let now = std::time::Instant::now();
        if batch.len() >= MAX_BATCH || now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(SLICE));
    }
}

/// State groups reserved for events whose write failed. An event queued after such a state event
/// was built on its group (the room's head moved on before the commit), so it cannot be written
/// either: it fails too, and so on down the line, until the room's head is reloaded from what
/// was committed. Failures are rare; past a bound the oldest are forgotten, by which time their
/// rooms' heads have long been reloaded.
#[derive(Default)]
struct LostGroups(std::collections::VecDeque<i64>);

/// Lost groups remembered at most.
const LOST_GROUPS_KEPT: usize = 4096;

impl LostGroups {
    fn add(&mut self, event: &NewEvent) {
        if let Some(group) = event.state_group_after {
            if self.0.len() == LOST_GROUPS_KEPT {
                self.0.pop_front();
            }
            self.0.push_back(group);
        }
    }

    /// The error for an event built on a lost group.
    fn dependent(&self, event: &NewEvent) -> Option<StorageError> {
        let before = event.state_group_before;
        self.0
            .contains(&before)
            .then(|| StorageError::Corrupt(format!("the event before {} in its room was not written", event.event_id)))
    }

    /// Answers (and drops) the jobs built on a lost group, in order, so their dependents go too.
    fn fail_dependents(&mut self, batch: &mut Vec<Job>) {
        if self.0.is_empty() {
            return;
        }
        let mut kept = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            match self.dependent(&job.event) {
                Some(e) => {
                    self.add(&job.event);
                    let _ = job.reply.send(Err(e));
                }
                None => kept.push(job),
            }
        }
        *batch = kept;
    }
}

/// The row of a committed event, as reading it back would give it.
fn committed_row(event: NewEvent, persisted: Persisted) -> EventRow {
    EventRow {
        stream_ordering: persisted.stream_ordering,
        event_id: event.event_id,
        room_id: event.room_id,
        event_type: event.event_type,
        state_key: event.state_key,
        sender: event.sender,
        depth: event.depth,
        origin_server_ts: event.origin_server_ts,
        state_group_before: event.state_group_before,
        state_group_after: persisted.state_group_after,
        rejected_reason: event.rejected_reason,
        json: event.json.into(),
    }
}

/// Writes a batch in one transaction, numbering its events from the remembered next ordering
/// (read from the database when unknown), and remembers the next one after the commit.
async fn write_batch(writer: &Writer, jobs: &[Job]) -> Result<Vec<Persisted>> {
    let written = write_batch_numbered(writer, jobs).await;
    match &written {
        Ok(results) => {
            if let Some(last) = results.iter().map(|p| p.stream_ordering).max() {
                writer.numbers.next_ordering.set(last + 1);
            }
        }
        Err(_) => writer.numbers.next_ordering.forget(),
    }
    written
}

async fn write_batch_numbered(writer: &Writer, jobs: &[Job]) -> Result<Vec<Persisted>> {
    let known = writer.numbers.next_ordering.known();
    let mut statements = JsonStatements::new(writer.engine);
    // Without state events (the common case, messages) nothing is written before the batch's
    // statements: one query after `BEGIN` on SQLite, one round trip on PostgreSQL.
    if let Some(first) = known
        && !jobs.iter().any(|job| has_state_group(&job.event))
    {
        let numbered: Vec<Numbered<'_>> = jobs
            .iter()
            .zip(first..)
            .map(|(job, ordering)| (&job.event, ordering, job.event.state_group_before))
            .collect();
        queue_batch(writer, &mut statements, &numbered);
        statements.execute_atomically(&writer.pool).await?;
        return Ok(persisted(&numbered));
    }
    let mut tx = writer.pool.begin().await?;
    let first = match known {
        Some(next) => next,
        None => next_stream_ordering(&mut tx).await?,
    };
    // State groups in order: a state event's may build on the one before it.
    let mut new_groups = NewStateGroups::default();
    let mut numbered = Vec::with_capacity(jobs.len());
    for (job, ordering) in jobs.iter().zip(first..) {
        let group = state_group_of(&mut tx, &job.event, &writer.numbers.state_groups, &mut new_groups).await?;
        numbered.push((&job.event, ordering, group));
    }
    new_groups.queue(&mut statements);
    queue_batch(writer, &mut statements, &numbered);
    statements.execute(&mut tx).await?;
    tx.commit().await?;
    Ok(persisted(&numbered))
}

fn persisted(numbered: &[Numbered<'_>]) -> Vec<Persisted> {
    numbered
        .iter()
        .map(|(_, stream_ordering, state_group_after)| Persisted {
            stream_ordering: *stream_ordering,
            state_group_after: *state_group_after,
        })
        .collect()
}

/// Adds every write of a batch of numbered events: their rows, push actions and search rows.
fn queue_batch(writer: &Writer, statements: &mut JsonStatements, numbered: &[Numbered<'_>]) {
    queue_events(&writer.codec, statements, numbered);
    let notified: Vec<(&NewEvent, i64, &super::PushAction)> = numbered
        .iter()
        .flat_map(|(event, ordering, _)| event.push_actions.iter().map(move |action| (*event, *ordering, action)))
        .collect();
    super::notifications::queue_push_actions(statements, &notified);
    // With encryption at rest there is no index: it would hold message text in the clear.
    if !writer.codec.encrypts() {
        let indexed: Vec<(&NewEvent, i64)> = numbered.iter().map(|(event, ordering, _)| (*event, *ordering)).collect();
        super::search::queue_events(statements, &indexed);
    }
}
