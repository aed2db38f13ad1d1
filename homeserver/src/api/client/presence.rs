//! `PUT/GET /presence/{userId}/status`.

use std::time::Duration;

use ruma::api::client::presence::{get_presence, set_presence};

use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::presence;
use crate::state::AppState;

pub async fn set(state: AppState, request: Ruma<set_presence::v3::Request>) -> Result<set_presence::v3::Response> {
    let caller = &request.authed()?.user_id;
    let body = &request.body;
    presence::set(&state, caller, &body.user_id, &body.presence, body.status_msg.as_deref()).await?;
    Ok(set_presence::v3::Response::new())
}

pub async fn get(state: AppState, request: Ruma<get_presence::v3::Request>) -> Result<get_presence::v3::Response> {
    let caller = &request.authed()?.user_id;
    let view = presence::get(&state, caller, &request.body.user_id).await?;
    let mut response = get_presence::v3::Response::new(view.presence);
    response.status_msg = view.status_msg;
    response.last_active_ago = view.last_active_ago.map(Duration::from_millis);
    response.currently_active = view.currently_active;
    Ok(response)
}
