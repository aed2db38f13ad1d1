//! `POST /user/{userId}/openid/request_token`.

use ruma::api::client::account::request_openid_token;
use ruma::authentication::TokenType;

use crate::accounts::openid;
use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::state::AppState;

pub async fn request_token(
    state: AppState,
    request: Ruma<request_openid_token::v3::Request>,
) -> Result<request_openid_token::v3::Response> {
    let caller = &request.authed()?.user_id;
    let token = openid::request_token(&state, caller, &request.body.user_id).await?;
    Ok(request_openid_token::v3::Response::new(token, TokenType::Bearer, state.server_name.clone(), openid::LIFETIME))
}
