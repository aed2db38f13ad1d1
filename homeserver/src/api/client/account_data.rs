//! Account data and tags endpoints.

use ruma::api::client::config::{
    get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data,
};
use ruma::api::client::tag::{create_tag, delete_tag, get_tags};

use crate::account_data;
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::client_event::to_raw;
use crate::state::AppState;

fn json(raw: &serde_json::value::RawValue) -> Result<serde_json::Value> {
    serde_json::from_str(raw.get()).map_err(|e| Error::bad_json(e.to_string()))
}

pub async fn set_global(
    state: AppState,
    request: Ruma<set_global_account_data::v3::Request>,
) -> Result<set_global_account_data::v3::Response> {
    let body = &request.body;
    let caller = &request.authed()?.user_id;
    account_data::set(&state, caller, &body.user_id, None, &body.event_type.to_string(), json(body.data.json())?)
        .await?;
    Ok(set_global_account_data::v3::Response::new())
}

pub async fn get_global(
    state: AppState,
    request: Ruma<get_global_account_data::v3::Request>,
) -> Result<get_global_account_data::v3::Response> {
    let body = &request.body;
    let caller = &request.authed()?.user_id;
    let content = account_data::get(&state, caller, &body.user_id, None, &body.event_type.to_string()).await?;
    Ok(get_global_account_data::v3::Response::new(to_raw(&content)?))
}

pub async fn set_room(
    state: AppState,
    request: Ruma<set_room_account_data::v3::Request>,
) -> Result<set_room_account_data::v3::Response> {
    let body = &request.body;
    let caller = &request.authed()?.user_id;
    let content = json(body.data.json())?;
    account_data::set(&state, caller, &body.user_id, Some(&body.room_id), &body.event_type.to_string(), content)
        .await?;
    Ok(set_room_account_data::v3::Response::new())
}

pub async fn get_room(
    state: AppState,
    request: Ruma<get_room_account_data::v3::Request>,
) -> Result<get_room_account_data::v3::Response> {
    let body = &request.body;
    let caller = &request.authed()?.user_id;
    let content =
        account_data::get(&state, caller, &body.user_id, Some(&body.room_id), &body.event_type.to_string()).await?;
    Ok(get_room_account_data::v3::Response::new(to_raw(&content)?))
}

pub async fn tags(state: AppState, request: Ruma<get_tags::v3::Request>) -> Result<get_tags::v3::Response> {
    let body = &request.body;
    let tags = account_data::tags(&state, &request.authed()?.user_id, &body.user_id, &body.room_id).await?;
    let tags = serde_json::from_value(tags).map_err(|e| Error::internal(format!("stored tags: {e}")))?;
    Ok(get_tags::v3::Response::new(tags))
}

pub async fn put_tag(state: AppState, request: Ruma<create_tag::v3::Request>) -> Result<create_tag::v3::Response> {
    let body = &request.body;
    let info = serde_json::to_value(&body.tag_info).map_err(|e| Error::internal(e.to_string()))?;
    let caller = &request.authed()?.user_id;
    account_data::set_tag(&state, caller, &body.user_id, &body.room_id, &body.tag, Some(info)).await?;
    Ok(create_tag::v3::Response::new())
}

pub async fn delete_tag(state: AppState, request: Ruma<delete_tag::v3::Request>) -> Result<delete_tag::v3::Response> {
    let body = &request.body;
    let caller = &request.authed()?.user_id;
    account_data::set_tag(&state, caller, &body.user_id, &body.room_id, &body.tag, None).await?;
    Ok(delete_tag::v3::Response::new())
}
