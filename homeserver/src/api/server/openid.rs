//! `GET /_matrix/federation/v1/openid/userinfo`: who an OpenID token belongs to. Authenticated by
//! the token itself, not by X-Matrix signatures (the caller is usually not a homeserver).

use ruma::api::federation::openid::get_openid_userinfo;

use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::state::AppState;

pub async fn userinfo(
    state: AppState,
    request: Ruma<get_openid_userinfo::v1::Request>,
) -> Result<get_openid_userinfo::v1::Response> {
    let user_id = crate::accounts::openid::userinfo(&state, &request.body.access_token).await?;
    Ok(get_openid_userinfo::v1::Response::new(user_id))
}
