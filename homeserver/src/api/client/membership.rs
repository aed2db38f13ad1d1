//! Membership endpoints: join, invite, leave, forget, kick, ban, unban.

use ruma::api::client::membership::{
    ban_user, forget_room, invite_user, join_room_by_id, join_room_by_id_or_alias, kick_user, leave_room, unban_user,
};

use ruma::api::client::knock::knock_room;

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::create::resolve_room_with_servers;
use crate::rooms::membership::{self, Moderation};
use crate::state::AppState;

pub async fn join_by_id(
    state: AppState,
    request: Ruma<join_room_by_id::v3::Request>,
) -> Result<join_room_by_id::v3::Response> {
    let body = &request.body;
    let room_id =
        membership::join(&state, &body.room_id, &request.authed()?.user_id, body.reason.as_deref(), &[]).await?;
    Ok(join_room_by_id::v3::Response::new(room_id))
}

pub async fn join_by_id_or_alias(
    state: AppState,
    request: Ruma<join_room_by_id_or_alias::v3::Request>,
) -> Result<join_room_by_id_or_alias::v3::Response> {
    let body = &request.body;
    let (room_id, mut servers) = resolve_room_with_servers(&state, body.room_id_or_alias.as_str()).await?;
    servers.extend(body.via.iter().cloned());
    let user_id = &request.authed()?.user_id;
    let room_id = membership::join(&state, &room_id, user_id, body.reason.as_deref(), &servers).await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id))
}

pub async fn invite(state: AppState, request: Ruma<invite_user::v3::Request>) -> Result<invite_user::v3::Response> {
    let body = &request.body;
    let invite_user::v3::InvitationRecipient::UserId(recipient) = &body.recipient else {
        return Err(Error::unrecognized(http::StatusCode::BAD_REQUEST, "Third-party invites are not supported"));
    };
    let sender = &request.authed()?.user_id;
    membership::invite(&state, &body.room_id, sender, &recipient.user_id, recipient.reason.as_deref()).await?;
    Ok(invite_user::v3::Response::new())
}

pub async fn leave(state: AppState, request: Ruma<leave_room::v3::Request>) -> Result<leave_room::v3::Response> {
    let body = &request.body;
    membership::leave(&state, &body.room_id, &request.authed()?.user_id, body.reason.as_deref()).await?;
    Ok(leave_room::v3::Response::new())
}

pub async fn forget(state: AppState, request: Ruma<forget_room::v3::Request>) -> Result<forget_room::v3::Response> {
    membership::forget(&state, &request.body.room_id, &request.authed()?.user_id).await?;
    Ok(forget_room::v3::Response::new())
}

pub async fn kick(state: AppState, request: Ruma<kick_user::v3::Request>) -> Result<kick_user::v3::Response> {
    let body = &request.body;
    let sender = &request.authed()?.user_id;
    membership::moderate(&state, &body.room_id, sender, &body.user_id, Moderation::Kick, body.reason.as_deref())
        .await?;
    Ok(kick_user::v3::Response::new())
}

pub async fn ban(state: AppState, request: Ruma<ban_user::v3::Request>) -> Result<ban_user::v3::Response> {
    let body = &request.body;
    let sender = &request.authed()?.user_id;
    membership::moderate(&state, &body.room_id, sender, &body.user_id, Moderation::Ban, body.reason.as_deref()).await?;
    Ok(ban_user::v3::Response::new())
}

pub async fn unban(state: AppState, request: Ruma<unban_user::v3::Request>) -> Result<unban_user::v3::Response> {
    let body = &request.body;
    let sender = &request.authed()?.user_id;
    membership::moderate(&state, &body.room_id, sender, &body.user_id, Moderation::Unban, body.reason.as_deref())
        .await?;
    Ok(unban_user::v3::Response::new())
}

pub async fn knock(state: AppState, request: Ruma<knock_room::v3::Request>) -> Result<knock_room::v3::Response> {
    let body = &request.body;
    let (room_id, mut servers) = resolve_room_with_servers(&state, body.room_id_or_alias.as_str()).await?;
    servers.extend(body.via.iter().cloned());
    membership::knock(&state, &room_id, &request.authed()?.user_id, body.reason.as_deref(), &servers).await?;
    Ok(knock_room::v3::Response::new(room_id))
}
