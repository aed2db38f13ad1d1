//! `/rooms/{roomId}/relations/…` and `/rooms/{roomId}/threads`.

use ruma::api::Direction;
use ruma::api::client::relations::{
    get_relating_events, get_relating_events_with_rel_type, get_relating_events_with_rel_type_and_event_type,
};
use ruma::api::client::threads::get_threads::{self, v1::IncludeThreads};
use ruma::{RoomId, UInt, UserId};

use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::rooms::client_event::to_raw;
use crate::rooms::relations::{self, RelationsPage, RelationsRequest};
use crate::state::AppState;

/// The fields the three `/relations` variants share.
struct Common<'a> {
    room_id: &'a RoomId,
    event_id: &'a str,
    from: Option<&'a str>,
    to: Option<&'a str>,
    limit: Option<UInt>,
    dir: &'a Direction,
    recurse: bool,
}

async fn page(
    state: &AppState,
    user_id: &UserId,
    common: Common<'_>,
    rel_type: Option<&str>,
    event_type: Option<&str>,
) -> Result<(Vec<ruma::serde::Raw<ruma::events::AnyMessageLikeEvent>>, RelationsPage)> {
    let request = RelationsRequest {
        rel_type,
        event_type,
        from: common.from,
        to: common.to,
        limit: common.limit.map(u64::from),
        forwards: matches!(common.dir, Direction::Forward),
        recurse: common.recurse,
    };
    let page = relations::relations(state, user_id, common.room_id, common.event_id, request).await?;
    let chunk = page.chunk.iter().map(to_raw).collect::<Result<_>>()?;
    Ok((chunk, page))
}

pub async fn all(
    state: AppState,
    request: Ruma<get_relating_events::v1::Request>,
) -> Result<get_relating_events::v1::Response> {
    let b = &request.body;
    let common = Common {
        room_id: &b.room_id,
        event_id: b.event_id.as_str(),
        from: b.from.as_deref(),
        to: b.to.as_deref(),
        limit: b.limit,
        dir: &b.dir,
        recurse: b.recurse,
    };
    let (chunk, page) = page(&state, &request.authed()?.user_id, common, None, None).await?;
    let mut response = get_relating_events::v1::Response::new(chunk);
    response.next_batch = page.next_batch;
    response.recursion_depth = page.recursion_depth.map(UInt::new_saturating);
    Ok(response)
}

pub async fn by_rel_type(
    state: AppState,
    request: Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type::v1::Response> {
    let b = &request.body;
    let common = Common {
        room_id: &b.room_id,
        event_id: b.event_id.as_str(),
        from: b.from.as_deref(),
        to: b.to.as_deref(),
        limit: b.limit,
        dir: &b.dir,
        recurse: b.recurse,
    };
    let rel_type = b.rel_type.to_string();
    let (chunk, page) = page(&state, &request.authed()?.user_id, common, Some(&rel_type), None).await?;
    let mut response = get_relating_events_with_rel_type::v1::Response::new(chunk);
    response.next_batch = page.next_batch;
    response.recursion_depth = page.recursion_depth.map(UInt::new_saturating);
    Ok(response)
}

pub async fn by_rel_and_event_type(
    state: AppState,
    request: Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type_and_event_type::v1::Response> {
    let b = &request.body;
    let common = Common {
        room_id: &b.room_id,
        event_id: b.event_id.as_str(),
        from: b.from.as_deref(),
        to: b.to.as_deref(),
        limit: b.limit,
        dir: &b.dir,
        recurse: b.recurse,
    };
    let (rel_type, event_type) = (b.rel_type.to_string(), b.event_type.to_string());
    let (chunk, page) = page(&state, &request.authed()?.user_id, common, Some(&rel_type), Some(&event_type)).await?;
    let mut response = get_relating_events_with_rel_type_and_event_type::v1::Response::new(chunk);
    response.next_batch = page.next_batch;
    response.recursion_depth = page.recursion_depth.map(UInt::new_saturating);
    Ok(response)
}

pub async fn threads(state: AppState, request: Ruma<get_threads::v1::Request>) -> Result<get_threads::v1::Response> {
    let b = &request.body;
    let participated = matches!(b.include, IncludeThreads::Participated);
    let limit = b.limit.map(u64::from);
    let user_id = &request.authed()?.user_id;
    let (chunk, next) = relations::threads(&state, user_id, &b.room_id, participated, b.from.as_deref(), limit).await?;
    let mut response = get_threads::v1::Response::new(chunk.iter().map(to_raw).collect::<Result<_>>()?);
    response.next_batch = next;
    Ok(response)
}
