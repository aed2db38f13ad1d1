//! `/sync` and filters.

use ruma::api::client::filter::{create_filter, get_filter};
use ruma::api::client::sync::sync_events;

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::sync::{SyncRequest, resolve_filter, sync};

pub async fn sync_events(
    state: AppState,
    request: Ruma<sync_events::v3::Request>,
) -> Result<sync_events::v3::Response> {
    let authed = request.authed()?.clone();
    let body = request.body;
    let filter = resolve_filter(&state, &authed.user_id, body.filter).await?;
    let sync_request = SyncRequest {
        since: body.since,
        full_state: body.full_state,
        timeout: body.timeout,
        filter,
        set_presence: body.set_presence,
    };
    sync(&state, &authed, sync_request).await
}

fn own_user(request_user: &ruma::UserId, path_user: &ruma::UserId) -> Result<()> {
    if request_user == path_user { Ok(()) } else { Err(Error::forbidden("You can only manage your own filters")) }
}

pub async fn create(state: AppState, request: Ruma<create_filter::v3::Request>) -> Result<create_filter::v3::Response> {
    let authed = request.authed()?;
    own_user(&authed.user_id, &request.body.user_id)?;
    let json = serde_json::to_string(&request.body.filter).map_err(|e| Error::internal(e.to_string()))?;
    let filter_id = state.storage.create_filter(authed.user_id.as_str(), &json).await?;
    Ok(create_filter::v3::Response::new(filter_id))
}

pub async fn get(state: AppState, request: Ruma<get_filter::v3::Request>) -> Result<get_filter::v3::Response> {
    let authed = request.authed()?;
    own_user(&authed.user_id, &request.body.user_id)?;
    let json = state.storage.filter(authed.user_id.as_str(), &request.body.filter_id).await?;
    let json = json.ok_or_else(|| Error::not_found("Unknown filter"))?;
    let filter = serde_json::from_str(&json).map_err(|e| Error::internal(format!("stored filter: {e}")))?;
    Ok(get_filter::v3::Response::new(filter))
}
