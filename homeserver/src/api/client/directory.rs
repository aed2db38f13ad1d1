//! Room aliases and the public room directory.

use ruma::api::client::alias::{create_alias, delete_alias, get_alias};
use ruma::api::client::directory::{
    get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
};
use ruma::api::client::room::{Visibility, aliases};
use ruma::directory::{PublicRoomsChunk, PublicRoomsChunkInit};
use ruma::{OwnedRoomAliasId, OwnedRoomId, UInt};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::directory::{self, DirectoryEntry};
use crate::state::AppState;

pub async fn create(state: AppState, request: Ruma<create_alias::v3::Request>) -> Result<create_alias::v3::Response> {
    let body = &request.body;
    directory::create_alias(&state, request.authed()?, &body.room_alias, &body.room_id).await?;
    Ok(create_alias::v3::Response::new())
}

pub async fn get(state: AppState, request: Ruma<get_alias::v3::Request>) -> Result<get_alias::v3::Response> {
    let (room_id, servers) = directory::resolve_alias(&state, &request.body.room_alias).await?;
    Ok(get_alias::v3::Response::new(room_id, servers))
}

pub async fn delete(state: AppState, request: Ruma<delete_alias::v3::Request>) -> Result<delete_alias::v3::Response> {
    directory::delete_alias(&state, request.authed()?, &request.body.room_alias).await?;
    Ok(delete_alias::v3::Response::new())
}

pub async fn room_aliases(state: AppState, request: Ruma<aliases::v3::Request>) -> Result<aliases::v3::Response> {
    let room_id = &request.body.room_id;
    crate::rooms::membership::require_joined(&state, room_id, &request.authed()?.user_id).await?;
    let aliases = state
        .storage
        .room_aliases(room_id.as_str())
        .await?
        .into_iter()
        .filter_map(|a| OwnedRoomAliasId::try_from(a).ok())
        .collect();
    Ok(aliases::v3::Response::new(aliases))
}

fn to_chunk(entry: DirectoryEntry) -> Result<PublicRoomsChunk> {
    let room_id = OwnedRoomId::try_from(entry.room_id).map_err(|e| Error::internal(e.to_string()))?;
    let mut chunk = PublicRoomsChunk::from(PublicRoomsChunkInit {
        num_joined_members: UInt::try_from(entry.joined).unwrap_or_default(),
        room_id,
        world_readable: entry.world_readable,
        guest_can_join: entry.guest_can_join,
    });
    chunk.name = entry.name;
    chunk.topic = entry.topic;
    chunk.canonical_alias = entry.canonical_alias.and_then(|a| OwnedRoomAliasId::try_from(a).ok());
    chunk.avatar_url = entry.avatar_url.map(Into::into);
    chunk.join_rule = entry.join_rule.as_str().into();
    Ok(chunk)
}

/// Directory pages are offsets: `p<n>`.
fn page_bounds(since: Option<&str>, limit: Option<UInt>) -> Result<(usize, usize)> {
    let offset = match since {
        Some(token) => token
            .strip_prefix('p')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::invalid_param("Invalid since token"))?,
        None => 0,
    };
    let limit = limit.map_or(100, |l| usize::try_from(u64::from(l)).unwrap_or(100)).clamp(1, 500);
    Ok((offset, limit))
}

pub(crate) async fn directory_page(
    state: &AppState,
    search: Option<&str>,
    since: Option<&str>,
    limit: Option<UInt>,
) -> Result<(Vec<PublicRoomsChunk>, Option<String>, Option<String>, UInt)> {
    let (offset, limit) = page_bounds(since, limit)?;
    let (entries, total) = directory::public_rooms(state, search, offset, limit).await?;
    let next = (offset + entries.len() < total).then(|| format!("p{}", offset + entries.len()));
    let prev = (offset > 0).then(|| format!("p{}", offset.saturating_sub(limit)));
    let chunk = entries.into_iter().map(to_chunk).collect::<Result<_>>()?;
    Ok((chunk, next, prev, UInt::try_from(total).unwrap_or_default()))
}

/// Another server's public rooms, when the client names one.
async fn remote_directory(
    state: &AppState,
    server: Option<&ruma::ServerName>,
    search: Option<&str>,
    since: Option<&str>,
    limit: Option<UInt>,
) -> Result<Option<get_public_rooms_filtered::v3::Response>> {
    let Some(server) = server.filter(|s| **s != state.server_name) else { return Ok(None) };
    if !state.config.federation.enabled {
        return Err(Error::not_found("Federation is disabled"));
    }
    let mut request = ruma::api::federation::directory::get_public_rooms_filtered::v1::Request::new();
    request.limit = limit;
    request.since = since.map(str::to_owned);
    request.filter.generic_search_term = search.map(str::to_owned);
    let answer = state.federation.send(server, &state.signing_key, request).await.map_err(Error::remote)?;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.chunk = answer.chunk;
    response.next_batch = answer.next_batch;
    response.prev_batch = answer.prev_batch;
    response.total_room_count_estimate = answer.total_room_count_estimate;
    Ok(Some(response))
}

pub async fn public_rooms(
    state: AppState,
    request: Ruma<get_public_rooms::v3::Request>,
) -> Result<get_public_rooms::v3::Response> {
    let body = &request.body;
    if let Some(remote) =
        remote_directory(&state, body.server.as_deref(), None, body.since.as_deref(), body.limit).await?
    {
        let mut response = get_public_rooms::v3::Response::new(remote.chunk);
        response.next_batch = remote.next_batch;
        response.prev_batch = remote.prev_batch;
        response.total_room_count_estimate = remote.total_room_count_estimate;
        return Ok(response);
    }
    let (chunk, next, prev, total) = directory_page(&state, None, body.since.as_deref(), body.limit).await?;
    let mut response = get_public_rooms::v3::Response::new(chunk);
    response.next_batch = next;
    response.prev_batch = prev;
    response.total_room_count_estimate = Some(total);
    Ok(response)
}

pub async fn public_rooms_filtered(
    state: AppState,
    request: Ruma<get_public_rooms_filtered::v3::Request>,
) -> Result<get_public_rooms_filtered::v3::Response> {
    let body = &request.body;
    let search = body.filter.generic_search_term.as_deref();
    let since = body.since.as_deref();
    if let Some(remote) = remote_directory(&state, body.server.as_deref(), search, since, body.limit).await? {
        return Ok(remote);
    }
    let (chunk, next, prev, total) = directory_page(&state, search, body.since.as_deref(), body.limit).await?;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.chunk = chunk;
    response.next_batch = next;
    response.prev_batch = prev;
    response.total_room_count_estimate = Some(total);
    Ok(response)
}

pub async fn get_visibility(
    state: AppState,
    request: Ruma<get_room_visibility::v3::Request>,
) -> Result<get_room_visibility::v3::Response> {
    let room = crate::rooms::state::room(&state, request.body.room_id.as_str()).await?;
    let visibility = if room.row.is_public { Visibility::Public } else { Visibility::Private };
    Ok(get_room_visibility::v3::Response::new(visibility))
}

pub async fn set_visibility(
    state: AppState,
    request: Ruma<set_room_visibility::v3::Request>,
) -> Result<set_room_visibility::v3::Response> {
    let body = &request.body;
    let public = body.visibility == Visibility::Public;
    directory::set_published(&state, request.authed()?, &body.room_id, public).await?;
    Ok(set_room_visibility::v3::Response::new())
}
