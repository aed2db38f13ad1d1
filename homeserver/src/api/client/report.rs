//! `POST /rooms/{roomId}/report/{eventId}` and `POST /rooms/{roomId}/report`.

use ruma::api::client::room::{report_content, report_room};

use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::rooms::report;
use crate::state::AppState;

pub async fn event(
    state: AppState,
    request: Ruma<report_content::v3::Request>,
) -> Result<report_content::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    report::report_event(&state, &authed.user_id, &body.room_id, body.event_id.as_str(), body.reason.as_deref())
        .await?;
    Ok(report_content::v3::Response::new())
}

pub async fn room(state: AppState, request: Ruma<report_room::v3::Request>) -> Result<report_room::v3::Response> {
    let authed = request.authed()?;
    report::report_room(&state, &authed.user_id, &request.body.room_id, &request.body.reason).await?;
    Ok(report_room::v3::Response::new())
}
