//! `POST /search` (room events).

use ruma::api::client::search::search_events::{self, v3::ResultCategories};

use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::state::AppState;

pub async fn search(state: AppState, request: Ruma<search_events::v3::Request>) -> Result<search_events::v3::Response> {
    let user_id = &request.authed()?.user_id;
    let body = &request.body;
    let mut categories = ResultCategories::new();
    if let Some(criteria) = &body.search_categories.room_events {
        categories.room_events =
            crate::search::search_room_events(&state, user_id, criteria, body.next_batch.as_deref()).await?;
    }
    Ok(search_events::v3::Response::new(categories))
}
