//! Server discovery: supported versions, `.well-known/matrix/client`, capabilities.

use std::collections::BTreeMap;

use ruma::RoomVersionId;
use ruma::api::client::discovery::get_capabilities::v3::{Capabilities, RoomVersionStability, RoomVersionsCapability};
use ruma::api::client::discovery::{discover_homeserver, get_capabilities, get_supported_versions};

use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::state::AppState;

/// Spec versions whose client-server API we serve.
const SUPPORTED_VERSIONS: &[&str] = &[
    "r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4",
    "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12",
];

pub async fn versions(
    _state: AppState,
    _request: Ruma<get_supported_versions::Request>,
) -> Result<get_supported_versions::Response> {
    let mut response =
        get_supported_versions::Response::new(SUPPORTED_VERSIONS.iter().map(|v| (*v).to_owned()).collect());
    response.unstable_features = BTreeMap::new();
    Ok(response)
}

pub async fn well_known_client(
    state: AppState,
    _request: Ruma<discover_homeserver::Request>,
) -> Result<discover_homeserver::Response> {
    Ok(discover_homeserver::Response::new(discover_homeserver::HomeserverInfo::new(
        state.config.effective_public_baseurl(),
    )))
}

pub async fn capabilities(
    _state: AppState,
    _request: Ruma<get_capabilities::v3::Request>,
) -> Result<get_capabilities::v3::Response> {
    let mut capabilities = Capabilities::new();
    capabilities.change_password.enabled = true;
    capabilities.thirdparty_id_changes.enabled = false;
    let available = (1..=12)
        .filter_map(|v| RoomVersionId::try_from(v.to_string().as_str()).ok())
        .map(|v| (v, RoomVersionStability::Stable))
        .collect();
    capabilities.room_versions = RoomVersionsCapability::new(RoomVersionId::V10, available);
    Ok(get_capabilities::v3::Response::new(capabilities))
}
