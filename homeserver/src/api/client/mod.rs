//! Client-server API, one module per area.

mod account;
mod device;
mod discovery;
mod register;
mod session;

use axum::Router;

use super::ruma::RumaRouter;
use crate::state::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
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
        .ruma(device::list)
        .ruma(device::get)
        .ruma(device::update)
        .ruma(device::delete)
        .ruma(device::delete_many)
}
