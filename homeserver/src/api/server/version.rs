//! `GET /_matrix/federation/v1/version`.

use ruma::api::federation::discovery::get_server_version;

use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::state::AppState;

pub async fn version(
    _state: AppState,
    _request: Ruma<get_server_version::v1::Request>,
) -> Result<get_server_version::v1::Response> {
    let mut server = get_server_version::v1::Server::new();
    server.name = Some("Myelin".into());
    server.version = Some(env!("CARGO_PKG_VERSION").into());
    let mut response = get_server_version::v1::Response::new();
    response.server = Some(server);
    Ok(response)
}
