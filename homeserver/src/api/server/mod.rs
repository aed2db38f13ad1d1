//! Server-server (federation) API, one module per area.

mod keys;
mod openid;

use axum::Router;

use super::ruma::RumaRouter;
use crate::state::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma(keys::server_keys).ruma(keys::well_known_server).ruma(openid::userinfo)
}
