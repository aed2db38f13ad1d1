//! Our signing keys (`/_matrix/key/v2/server`) and federation delegation (`.well-known/matrix/server`).

use federation::keys::{OldVerifyKey, signed_server_keys};
use ruma::OwnedServerName;
use ruma::api::federation::discovery::{discover_homeserver, get_server_keys};
use ruma::serde::Raw;

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::state::AppState;

pub async fn server_keys(
    state: AppState,
    _request: Ruma<get_server_keys::v2::Request>,
) -> Result<get_server_keys::v2::Response> {
    let keys_config = &state.config.keys;
    let old_keys: Vec<OldVerifyKey> = keys_config
        .old_verify_keys
        .iter()
        .map(|(key_id, old)| OldVerifyKey {
            key_id: key_id.clone(),
            public_key_base64: old.key.clone(),
            expired_ts: old.expired_ts,
        })
        .collect();
    let now = u64::try_from(state.now_ms()).unwrap_or(0);
    let valid_until = now.saturating_add(keys_config.validity_period_secs.saturating_mul(1000));
    let object = signed_server_keys(state.server_name.as_str(), &state.signing_key, &old_keys, valid_until);
    let raw = serde_json::value::to_raw_value(&object).map_err(|e| Error::internal(e.to_string()))?;
    Ok(get_server_keys::v2::Response::new(Raw::from_json(raw)))
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
