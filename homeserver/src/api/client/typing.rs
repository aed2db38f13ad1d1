//! `PUT /rooms/{roomId}/typing/{userId}`.

use ruma::api::client::typing::create_typing_event::{self, v3::Typing};

use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::state::AppState;

pub async fn set(
    state: AppState,
    request: Ruma<create_typing_event::v3::Request>,
) -> Result<create_typing_event::v3::Response> {
    let body = &request.body;
    let timeout = match &body.state {
        Typing::Yes(info) => Some(info.timeout),
        _ => None,
    };
    crate::typing::set_typing(&state, &request.authed()?.user_id, &body.user_id, &body.room_id, timeout).await?;
    Ok(create_typing_event::v3::Response::new())
}
