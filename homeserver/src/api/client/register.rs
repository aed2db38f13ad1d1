//! Registration: `/register`, `/register/available`, registration-token validity.

use ruma::api::client::account::{check_registration_token_validity, get_username_availability, register};

use crate::accounts::{self, Registration};
use crate::api::ruma::Ruma;
use crate::config::RegistrationMode;
use crate::error::{Error, Result};
use crate::state::AppState;

pub async fn register(state: AppState, request: Ruma<register::v3::Request>) -> Result<register::v3::Response> {
    let body = request.body;
    if body.login_type.is_some() {
        return Err(Error::unknown_token(false));
    }
    let registration = Registration {
        username: body.username,
        password: body.password,
        device_id: body.device_id,
        initial_device_display_name: body.initial_device_display_name,
        inhibit_login: body.inhibit_login,
        refresh_token: body.refresh_token,
        guest: body.kind == register::RegistrationKind::Guest,
    };
    let registered = accounts::register(&state, registration, body.auth.as_ref()).await?;
    let mut response = register::v3::Response::new(registered.user_id);
    if let Some((device_id, tokens)) = registered.session {
        response.device_id = Some(device_id);
        response.access_token = Some(tokens.access_token);
        response.refresh_token = tokens.refresh_token;
        response.expires_in = tokens.expires_in;
    }
    Ok(response)
}

pub async fn username_available(
    state: AppState,
    request: Ruma<get_username_availability::v3::Request>,
) -> Result<get_username_availability::v3::Response> {
    accounts::check_username_available(&state, &request.body.username).await?;
    Ok(get_username_availability::v3::Response::new(true))
}

pub async fn registration_token_validity(
    state: AppState,
    request: Ruma<check_registration_token_validity::v1::Request>,
) -> Result<check_registration_token_validity::v1::Response> {
    if state.config.registration != RegistrationMode::Token {
        return Err(Error::forbidden("Registration tokens are not used on this server"));
    }
    let row = state.storage.registration_token(&request.body.token).await?;
    let valid = row.is_some_and(|row| row.is_valid(state.now_ms()));
    Ok(check_registration_token_validity::v1::Response::new(valid))
}
