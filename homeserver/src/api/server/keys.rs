//! Our signing keys (`/_matrix/key/v2/server`) and federation delegation (`.well-known/matrix/server`).

use ruma::OwnedServerName;
use ruma::api::federation::discovery::{
    discover_homeserver, get_remote_server_keys, get_remote_server_keys_batch, get_server_keys,
};
use ruma::serde::Raw;

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::server_keys::own_key_object;
use crate::state::AppState;

pub async fn server_keys(
    state: AppState,
    _request: Ruma<get_server_keys::v2::Request>,
) -> Result<get_server_keys::v2::Response> {
    Ok(get_server_keys::v2::Response::new(to_raw(&own_key_object(&state))?))
}

fn to_raw<T>(object: &ruma::CanonicalJsonObject) -> Result<Raw<T>> {
    let raw = serde_json::value::to_raw_value(object).map_err(|e| Error::internal(e.to_string()))?;
    Ok(Raw::from_json(raw))
}

/// Notary: another server's keys as we fetched them, countersigned.
pub async fn query(
    state: AppState,
    request: Ruma<get_remote_server_keys::v2::Request>,
) -> Result<get_remote_server_keys::v2::Response> {
    let body = &request.body;
    let minimum = i64::from(body.minimum_valid_until_ts.0);
    let object = state.keyring.notarised_object(&state, body.server_name.as_str(), minimum).await?;
    let server_keys = object.iter().map(to_raw).collect::<Result<_>>()?;
    Ok(get_remote_server_keys::v2::Response::new(server_keys))
}

/// Notary, several servers at once.
pub async fn query_batch(
    state: AppState,
    request: Ruma<get_remote_server_keys_batch::v2::Request>,
) -> Result<get_remote_server_keys_batch::v2::Response> {
    let mut server_keys = Vec::new();
    for (server, criteria) in &request.body.server_keys {
        let minimum =
            criteria.values().filter_map(|c| c.minimum_valid_until_ts).map(|ts| i64::from(ts.0)).max().unwrap_or(0);
        if let Some(object) = state.keyring.notarised_object(&state, server.as_str(), minimum).await? {
            server_keys.push(to_raw(&object)?);
        }
    }
    Ok(get_remote_server_keys_batch::v2::Response::new(server_keys))
}

pub async fn well_known_server(
    state: AppState,
    _request: Ruma<discover_homeserver::Request>,
) -> Result<discover_homeserver::Response> {
    let delegated = &state.config.well_known.server;
    if delegated.is_empty() {
        return Err(Error::not_found("Federation is not delegated"));
    }
    let server = OwnedServerName::try_from(delegated.as_str()).map_err(|e| Error::internal(e.to_string()))?;
    Ok(discover_homeserver::Response::new(server))
}
