//! Queries from other servers: our users' profiles and our room aliases.

use ruma::api::federation::query::{get_profile_information, get_room_information};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::state::AppState;

pub async fn profile(
    state: AppState,
    request: Ruma<get_profile_information::v1::Request>,
) -> Result<get_profile_information::v1::Response> {
    request.origin()?;
    let body = &request.body;
    if body.user_id.server_name() != state.server_name {
        return Err(Error::not_found("Not a user of this server"));
    }
    let row = crate::rooms::profile::local_profile(&state, &body.user_id).await?;
    let wanted = |field: &str| body.field.as_ref().is_none_or(|f| f.as_str() == field);
    let mut response = get_profile_information::v1::Response::new();
    if let Some(name) = row.displayname.filter(|_| wanted("displayname")) {
        response.set("displayname".into(), name.into());
    }
    if let Some(url) = row.avatar_url.filter(|_| wanted("avatar_url")) {
        response.set("avatar_url".into(), url.into());
    }
    Ok(response)
}

pub async fn directory(
    state: AppState,
    request: Ruma<get_room_information::v1::Request>,
) -> Result<get_room_information::v1::Response> {
    request.origin()?;
    let alias = &request.body.room_alias;
    if alias.server_name() != state.server_name {
        return Err(Error::not_found("Not an alias of this server"));
    }
    let (room_id, servers) = crate::rooms::directory::resolve_alias(&state, alias).await?;
    Ok(get_room_information::v1::Response::new(room_id, servers))
}
