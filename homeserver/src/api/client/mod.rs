//! Client-server API, one module per area.

mod account;
mod account_data;
mod backup;
mod device;
mod directory;
pub(crate) use directory::directory_page;
mod discovery;
mod keys;
pub(crate) mod media;
mod membership;
mod message;
mod openid;
mod presence;
mod profile;
mod push;
mod receipt;
mod register;
mod relations;
mod report;
mod room;
mod search;
mod session;
mod sync;
mod threepid;
mod to_device;
mod typing;
mod user_directory;

use axum::Router;

use super::ruma::RumaRouter;
use crate::state::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    report::routes(threepid::routes(media::routes(router)))
        .ruma(discovery::versions)
        .ruma(discovery::well_known_client)
        .ruma(discovery::capabilities)
        .ruma(register::register)
        .ruma(register::username_available)
        .ruma(register::registration_token_validity)
        .ruma(session::login_types)
        .ruma(session::login)
        .ruma(session::refresh)
        .ruma(session::logout)
        .ruma(session::logout_all)
        .ruma(account::whoami)
        .ruma(account::change_password)
        .ruma(account::deactivate)
        .ruma(openid::request_token)
        .ruma(device::list)
        .ruma(device::get)
        .ruma(device::update)
        .ruma(device::delete)
        .ruma(device::delete_many)
        .ruma(room::create)
        .ruma(room::joined)
        .ruma(room::members)
        .ruma(room::joined_members)
        .ruma(membership::join_by_id)
        .ruma(membership::join_by_id_or_alias)
        .ruma(membership::invite)
        .ruma(membership::leave)
        .ruma(membership::forget)
        .ruma(membership::kick)
        .ruma(membership::ban)
        .ruma(membership::unban)
        .ruma(message::send)
        .ruma(message::put_state)
        .ruma(message::get_state_for_key)
        .ruma(message::get_state)
        .ruma(message::messages)
        .ruma(message::event)
        .ruma(message::redact)
        .ruma(message::context)
        .ruma(message::timestamp_to_event)
        .ruma(membership::knock)
        .ruma(room::upgrade)
        .ruma(profile::get)
        .ruma(profile::get_field)
        .ruma(profile::set_field)
        .ruma(profile::delete_field)
        .ruma(account_data::set_global)
        .ruma(account_data::get_global)
        .ruma(account_data::set_room)
        .ruma(account_data::get_room)
        .ruma(account_data::tags)
        .ruma(account_data::put_tag)
        .ruma(account_data::delete_tag)
        .ruma(typing::set)
        .ruma(presence::set)
        .ruma(presence::get)
        .ruma(receipt::create)
        .ruma(receipt::markers)
        .ruma(push::all)
        .ruma(push::global)
        .ruma(push::get)
        .ruma(push::set)
        .ruma(push::delete)
        .ruma(push::enabled)
        .ruma(push::set_enabled)
        .ruma(push::actions)
        .ruma(push::set_actions)
        .ruma(push::notifications)
        .ruma(relations::all)
        .ruma(relations::by_rel_type)
        .ruma(relations::by_rel_and_event_type)
        .ruma(relations::threads)
        .ruma(user_directory::search)
        .ruma(search::search)
        .ruma(report::room)
        .ruma(sync::sync_events)
        .ruma(sync::create)
        .ruma(sync::get)
        .ruma(directory::create)
        .ruma(directory::get)
        .ruma(directory::delete)
        .ruma(directory::room_aliases)
        .ruma(directory::public_rooms)
        .ruma(directory::public_rooms_filtered)
        .ruma(directory::get_visibility)
        .ruma(directory::set_visibility)
        .ruma(keys::upload)
        .ruma(keys::query)
        .ruma(keys::claim)
        .ruma(keys::changes)
        .ruma(keys::upload_signing_keys)
        .ruma(keys::upload_signatures)
        .ruma(to_device::send)
        .ruma(backup::create_version)
        .ruma(backup::latest_version)
        .ruma(backup::version)
        .ruma(backup::update_version)
        .ruma(backup::delete_version)
        .ruma(backup::put_keys)
        .ruma(backup::put_room_keys)
        .ruma(backup::put_session_key)
        .ruma(backup::get_keys)
        .ruma(backup::get_room_keys)
        .ruma(backup::get_session_key)
        .ruma(backup::delete_keys)
        .ruma(backup::delete_room_keys)
        .ruma(backup::delete_session_key)
}
