//! Login sessions: `/login`, `/refresh`, `/logout`, `/logout/all`.

use ruma::api::client::session::{get_login_types, login, logout, logout_all, refresh_token};
use ruma::api::client::uiaa::UserIdentifier;

use crate::accounts::{self, PasswordLogin};
use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::state::AppState;

pub async fn login_types(
    _state: AppState,
    _request: Ruma<get_login_types::v3::Request>,
) -> Result<get_login_types::v3::Response> {
    let password = get_login_types::v3::LoginType::Password(get_login_types::v3::PasswordLoginType::new());
    Ok(get_login_types::v3::Response::new(vec![password]))
}

pub async fn login(state: AppState, request: Ruma<login::v3::Request>) -> Result<login::v3::Response> {
    let body = request.body;
    let login::v3::LoginInfo::Password(password) = body.login_info else {
        return Err(Error::unrecognized(http::StatusCode::BAD_REQUEST, "Only m.login.password is supported"));
    };
    #[allow(deprecated)]
    let identifier = match (password.identifier, password.user) {
        (Some(UserIdentifier::Matrix(id)), _) => id.user,
        (None, Some(user)) => user,
        (Some(_), _) => return Err(Error::forbidden("Only m.id.user identifiers are supported")),
        (None, None) => return Err(Error::missing_param("identifier is required")),
    };
    let login = PasswordLogin {
        identifier,
        password: password.password,
        device_id: body.device_id,
        initial_device_display_name: body.initial_device_display_name,
        refresh_token: body.refresh_token,
    };
    let (user_id, device_id, tokens) = accounts::login_with_password(&state, login).await?;
    let mut response = login::v3::Response::new(user_id, tokens.access_token, device_id);
    response.refresh_token = tokens.refresh_token;
    response.expires_in = tokens.expires_in;
    Ok(response)
}

pub async fn refresh(
    state: AppState,
    request: Ruma<refresh_token::v3::Request>,
) -> Result<refresh_token::v3::Response> {
    let tokens = accounts::refresh(&state, &request.body.refresh_token).await?;
    let mut response = refresh_token::v3::Response::new(tokens.access_token);
    response.refresh_token = tokens.refresh_token;
    response.expires_in_ms = tokens.expires_in;
    Ok(response)
}

pub async fn logout(state: AppState, request: Ruma<logout::v3::Request>) -> Result<logout::v3::Response> {
    accounts::logout(&state, request.authed()?).await?;
    Ok(logout::v3::Response::new())
}

pub async fn logout_all(state: AppState, request: Ruma<logout_all::v3::Request>) -> Result<logout_all::v3::Response> {
    accounts::logout_all(&state, request.authed()?).await?;
    Ok(logout_all::v3::Response::new())
}
