//! Long admin actions (room deletions, history purges) as background tasks: the request is
//! answered with the task's ID at once, and the task's status (`scheduled`, `active`,
//! `complete`, `failed`) and result are polled from the `admin_tasks` table. A task's end is
//! recorded in the audit log too, since the request that started it only saw it scheduled.

use std::future::Future;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::state::AppState;

pub const DELETE_ROOM: &str = "delete_room";
pub const PURGE_HISTORY: &str = "purge_history";

/// Records a scheduled task and starts it. `work` returns the result to report (also when it
/// failed part-way: a deletion reports whom it removed before failing) and its outcome.
pub async fn start<W>(state: &AppState, kind: &'static str, room_id: &str, actor: &str, work: W) -> Result<String>
where
    W: Future<Output = (Option<Value>, Result<()>)> + Send + 'static,
{
    let task_id = crate::accounts::tokens::new_opaque_id(16);
    if state.storage.admin_tasks_of_room(room_id, kind).await?.iter().any(|t| is_running(&t.status)) {
        return Err(Error::invalid_param(format!("A {kind} task is already running for this room")));
    }
    state.storage.insert_admin_task(&task_id, kind, room_id, state.now_ms()).await?;
    let (state, id, room_id, actor) = (state.clone(), task_id.clone(), room_id.to_owned(), actor.to_owned());
    tokio::spawn(async move {
        if let Err(e) = run(&state, &id, kind, &room_id, &actor, work).await {
            tracing::error!(task = %id, kind, error = %e, "an admin task could not record its progress");
        }
    });
    Ok(task_id)
}

pub fn is_running(status: &str) -> bool {
    matches!(status, "scheduled" | "active")
}

async fn run<W>(state: &AppState, task_id: &str, kind: &str, room_id: &str, actor: &str, work: W) -> Result<()>
where
    W: Future<Output = (Option<Value>, Result<()>)>,
{
    state.storage.update_admin_task(task_id, "active", None, None, state.now_ms()).await?;
    let (result, outcome) = work.await;
    let (status, error) = match &outcome {
        Ok(()) => ("complete", None),
        Err(e) => {
            tracing::warn!(task = %task_id, kind, %room_id, error = %e, "admin task failed");
            ("failed", Some(public_message(e)))
        }
    };
    state.storage.update_admin_task(task_id, status, result.as_ref(), error.as_deref(), state.now_ms()).await?;
    let params = json!({"task_id": task_id, "status": status, "result": result});
    let action = format!("{kind}_finished");
    let recorded = crate::audit::outcome(&outcome);
    crate::audit::record(&state.storage, state.now_ms(), actor, &action, Some(room_id), params, recorded).await?;
    Ok(())
}

/// What a failed task reports: a Matrix error's message; never database details.
fn public_message(e: &Error) -> String {
    match e {
        Error::Matrix { message, .. } => message.clone(),
        _ => "Internal server error".to_owned(),
    }
}

/// At start: tasks a previous run left unfinished can no longer finish.
pub async fn fail_interrupted(state: &AppState) {
    match state.storage.fail_interrupted_admin_tasks(state.now_ms()).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(tasks = n, "admin tasks interrupted by the last shutdown are marked failed"),
        Err(e) => tracing::error!(error = %e, "could not mark interrupted admin tasks"),
    }
}
