//! Profiles: `GET /profile/{userId}` and the display name and avatar URL fields.

use ruma::api::client::profile::{delete_profile_field, get_profile, get_profile_field, set_profile_field};
use ruma::profile::{ProfileFieldName, ProfileFieldValue};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::profile;
use crate::state::AppState;
use crate::storage::ProfileField;

fn supported(field: &ProfileFieldName) -> Result<ProfileField> {
    match field {
        ProfileFieldName::DisplayName => Ok(ProfileField::DisplayName),
        ProfileFieldName::AvatarUrl => Ok(ProfileField::AvatarUrl),
        other => Err(Error::unrecognized(
            http::StatusCode::BAD_REQUEST,
            format!("Profile field {other} is not supported (only displayname and avatar_url)"),
        )),
    }
}

pub async fn get(state: AppState, request: Ruma<get_profile::v3::Request>) -> Result<get_profile::v3::Response> {
    let row = profile::profile(&state, &request.body.user_id).await?;
    let mut response = get_profile::v3::Response::new();
    if let Some(name) = row.displayname {
        response.data.set("displayname".into(), name.into());
    }
    if let Some(url) = row.avatar_url {
        response.data.set("avatar_url".into(), url.into());
    }
    Ok(response)
}

pub async fn get_field(
    state: AppState,
    request: Ruma<get_profile_field::v3::Request>,
) -> Result<get_profile_field::v3::Response> {
    let body = &request.body;
    let field = supported(&body.field).map_err(|_| Error::not_found("Profile field not set"))?;
    let row = profile::profile(&state, &body.user_id).await?;
    let value = match field {
        ProfileField::DisplayName => row.displayname.map(ProfileFieldValue::DisplayName),
        ProfileField::AvatarUrl => row.avatar_url.map(|url| ProfileFieldValue::AvatarUrl(url.into())),
    };
    value.map(get_profile_field::v3::Response::new).ok_or_else(|| Error::not_found("Profile field not set"))
}

pub async fn set_field(
    state: AppState,
    request: Ruma<set_profile_field::v3::Request>,
) -> Result<set_profile_field::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    let field = supported(&body.value.field_name())?;
    let value = body.value.value().as_str().map(str::to_owned);
    profile::set_field(&state, &authed.user_id, &body.user_id, field, value).await?;
    Ok(set_profile_field::v3::Response::new())
}

pub async fn delete_field(
    state: AppState,
    request: Ruma<delete_profile_field::v3::Request>,
) -> Result<delete_profile_field::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    let field = supported(&body.field)?;
    profile::set_field(&state, &authed.user_id, &body.user_id, field, None).await?;
    Ok(delete_profile_field::v3::Response::new())
}
