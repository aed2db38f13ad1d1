//! The account itself: `/account/whoami`, `/account/password`, `/account/deactivate`.

use ruma::api::client::account::{ThirdPartyIdRemovalStatus, change_password, deactivate, whoami};

use crate::accounts;
use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::state::AppState;

pub async fn whoami(_state: AppState, request: Ruma<whoami::v3::Request>) -> Result<whoami::v3::Response> {
    let authed = request.authed()?;
    let mut response = whoami::v3::Response::new(authed.user_id.clone(), false);
    response.device_id = Some(authed.device_id.clone());
    Ok(response)
}

pub async fn change_password(
    state: AppState,
    request: Ruma<change_password::v3::Request>,
) -> Result<change_password::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    accounts::change_password(&state, authed, body.new_password.clone(), body.logout_devices, body.auth.as_ref())
        .await?;
    Ok(change_password::v3::Response::new())
}

pub async fn deactivate(state: AppState, request: Ruma<deactivate::v3::Request>) -> Result<deactivate::v3::Response> {
    accounts::deactivate(&state, request.authed()?, request.body.auth.as_ref(), request.body.erase).await?;
    Ok(deactivate::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport))
}
