//! `POST /rooms/{roomId}/report/{eventId}` and `POST /rooms/{roomId}/report`.
//!
//! Event reports are a plain axum handler on ruma's paths: ruma's request type has no `score`,
//! which clients still send and admins still read.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use ruma::api::Metadata as _;
use ruma::api::client::room::{report_content, report_room};
use ruma::api::path_builder::PathBuilder as _;
use ruma::{EventId, RoomId};
use serde::Deserialize;

use crate::api::ruma::Ruma;
use crate::api::{Caller, JsonBody, PathParams};
use crate::error::{Error, Result};
use crate::rooms::report;
use crate::state::AppState;

pub fn routes(mut router: Router<AppState>) -> Router<AppState> {
    for path in report_content::v3::Request::PATH_BUILDER.all_paths() {
        router = router.route(path, post(event));
    }
    router
}

#[derive(Debug, Deserialize)]
struct ReportBody {
    reason: Option<String>,
    score: Option<i64>,
}

async fn event(
    State(state): State<AppState>,
    Caller(authed): Caller,
    PathParams((room_id, event_id)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<ReportBody>,
) -> Result<axum::Json<serde_json::Value>> {
    let room_id = RoomId::parse(&room_id).map_err(|e| Error::invalid_param(format!("Invalid room ID: {e}")))?;
    let event_id = EventId::parse(&event_id).map_err(|e| Error::invalid_param(format!("Invalid event ID: {e}")))?;
    report::report_event(&state, &authed.user_id, &room_id, event_id.as_str(), body.reason.as_deref(), body.score)
        .await?;
    Ok(axum::Json(serde_json::json!({})))
}

pub async fn room(state: AppState, request: Ruma<report_room::v3::Request>) -> Result<report_room::v3::Response> {
    let authed = request.authed()?;
    report::report_room(&state, &authed.user_id, &request.body.room_id, &request.body.reason).await?;
    Ok(report_room::v3::Response::new())
}
