//! Content reports for admins: `GET /_synapse/admin/v1/event_reports` and `…/{reportId}`.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, AdminQuery, Page, backwards, json};
use crate::api::PathParams;
use crate::error::{Error, Result};
use crate::rooms::summary;
use crate::state::AppState;
use crate::storage::{ContentReportRow, ReportQuery};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_synapse/admin/v1/event_reports", get(list))
        .route("/_synapse/admin/v1/event_reports/{report_id}", get(details))
}

/// A report as Synapse lists it: with the room's name and alias and the event's sender.
async fn report_json(state: &AppState, report: &ContentReportRow) -> Result<(Value, Option<Value>)> {
    let room = summary::summary(state, &report.room_id).await.ok();
    let event = match &report.event_id {
        Some(event_id) => state.storage.event(event_id).await?,
        None => None,
    };
    let body = json!({
        "id": report.id,
        "received_ts": report.received_ts,
        "room_id": report.room_id,
        "name": room.as_ref().and_then(|r| r.name.clone()),
        "canonical_alias": room.as_ref().and_then(|r| r.canonical_alias.clone()),
        "event_id": report.event_id,
        "user_id": report.user_id,
        "reason": report.reason,
        "score": report.score,
        "sender": event.as_ref().map(|e| e.sender.clone()),
    });
    Ok((body, event.map(|e| std::sync::Arc::unwrap_or_clone(e.json))))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    from: Option<String>,
    limit: Option<i64>,
    dir: Option<String>,
    room_id: Option<String>,
    user_id: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    AdminQuery(params): AdminQuery<ListParams>,
) -> Result<Response> {
    let page = Page::parse(params.from.as_deref(), params.limit, 100)?;
    let query = ReportQuery {
        room_id: params.room_id,
        user_id: params.user_id,
        newest_first: backwards(params.dir.as_deref(), true)?,
        offset: page.from,
        limit: page.limit,
    };
    let (reports, total) = state.storage.event_reports(&query).await?;
    let mut listed = Vec::with_capacity(reports.len());
    for report in &reports {
        listed.push(report_json(&state, report).await?.0);
    }
    let mut body = json!({"event_reports": listed, "total": total});
    if let Some(next) = page.next(reports.len(), total) {
        body["next_token"] = json!(next);
    }
    Ok(json(StatusCode::OK, body))
}

async fn details(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(report_id): PathParams<String>,
) -> Result<Response> {
    let id: i64 = report_id.parse().map_err(|_| Error::invalid_param("The report ID must be an integer"))?;
    let report = state
        .storage
        .content_report(id)
        .await?
        .filter(|r| r.event_id.is_some())
        .ok_or_else(|| Error::not_found("Event report not found"))?;
    let (mut body, event) = report_json(&state, &report).await?;
    body["event_json"] = event.unwrap_or(Value::Null);
    Ok(json(StatusCode::OK, body))
}
