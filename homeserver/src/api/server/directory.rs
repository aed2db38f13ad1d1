//! Our public room directory for other servers.

use ruma::api::federation::directory::{get_public_rooms, get_public_rooms_filtered};

use crate::api::client::directory_page;
use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::state::AppState;

pub async fn public_rooms(
    state: AppState,
    request: Ruma<get_public_rooms::v1::Request>,
) -> Result<get_public_rooms::v1::Response> {
    request.origin()?;
    let body = &request.body;
    let (chunk, next, prev, total) = directory_page(&state, None, body.since.as_deref(), body.limit).await?;
    let mut response = get_public_rooms::v1::Response::new();
    response.chunk = chunk;
    response.next_batch = next;
    response.prev_batch = prev;
    response.total_room_count_estimate = Some(total);
    Ok(response)
}

pub async fn public_rooms_filtered(
    state: AppState,
    request: Ruma<get_public_rooms_filtered::v1::Request>,
) -> Result<get_public_rooms_filtered::v1::Response> {
    request.origin()?;
    let body = &request.body;
    let search = body.filter.generic_search_term.as_deref();
    let (chunk, next, prev, total) = directory_page(&state, search, body.since.as_deref(), body.limit).await?;
    let mut response = get_public_rooms_filtered::v1::Response::new();
    response.chunk = chunk;
    response.next_batch = next;
    response.prev_batch = prev;
    response.total_room_count_estimate = Some(total);
    Ok(response)
}
