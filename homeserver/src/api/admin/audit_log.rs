//! `GET /_myelin/admin/v1/audit_log`: the admin audit log, oldest first, with filters.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{Admin, AdminQuery, Page, json};
use crate::error::Result;
use crate::state::AppState;
use crate::storage::AuditQuery;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.route("/_myelin/admin/v1/audit_log", get(list))
}

#[derive(Debug, Deserialize)]
struct Params {
    /// The `next_token` of the previous page.
    from: Option<String>,
    limit: Option<i64>,
    actor: Option<String>,
    action: Option<String>,
    /// Milliseconds since the Unix epoch, inclusive.
    since: Option<i64>,
    until: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    AdminQuery(params): AdminQuery<Params>,
) -> Result<Response> {
    let page = Page::parse(params.from.as_deref(), params.limit, 100)?;
    let query = AuditQuery {
        actor: params.actor,
        action: params.action,
        since: params.since,
        until: params.until,
        after_seq: page.from,
        limit: page.limit,
    };
    let rows = state.storage.audit_entries(&query).await?;
    let entries: Vec<_> = rows
        .iter()
        .map(|row| {
            json!({
                "seq": row.seq,
                "ts": row.entry.ts,
                "actor": row.entry.actor,
                "action": row.entry.action,
                "target": row.entry.target,
                "params": row.entry.params,
                "result": row.entry.result,
                "hash": row.hash,
            })
        })
        .collect();
    let mut body = json!({"entries": entries});
    if let Some(last) = rows.last().filter(|_| i64::try_from(rows.len()).unwrap_or(i64::MAX) == page.limit) {
        body["next_token"] = json!(last.seq.to_string());
    }
    Ok(json(StatusCode::OK, body))
}
