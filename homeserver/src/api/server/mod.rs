//! Server-server (federation) API, one module per area.

mod directory;
mod e2ee;
mod events;
mod keys;
mod media;
mod membership;
mod openid;
mod query;
mod transactions;
mod version;

use axum::Router;

use super::ruma::RumaRouter;
use crate::state::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    media::routes(router)
        .ruma(keys::server_keys)
        .ruma(keys::well_known_server)
        .ruma(keys::query)
        .ruma(keys::query_batch)
        .ruma(version::version)
        .ruma(membership::make_join)
        .ruma(membership::send_join)
        .ruma(membership::invite)
        .ruma(membership::make_leave)
        .ruma(membership::send_leave)
        .ruma(membership::make_knock)
        .ruma(membership::send_knock)
        .ruma(transactions::send)
        .ruma(events::event)
        .ruma(events::state_ids)
        .ruma(events::room_state)
        .ruma(events::event_auth)
        .ruma(events::timestamp_to_event)
        .ruma(events::missing_events)
        .ruma(events::backfill)
        .ruma(e2ee::query)
        .ruma(e2ee::claim)
        .ruma(e2ee::devices)
        .ruma(openid::userinfo)
        .ruma(query::profile)
        .ruma(query::directory)
        .ruma(directory::public_rooms)
        .ruma(directory::public_rooms_filtered)
}
