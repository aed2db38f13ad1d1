//! Keys of other servers' users: `/keys/query` and `/keys/claim` for them are answered by asking
//! their servers, all at once, each within the client's timeout. A server that fails or is too
//! slow is reported under `failures`; keys it returns for anyone but its own users are dropped.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use ruma::api::federation::keys::{claim_keys, get_keys};
use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId};
use serde_json::{Value, json};

use super::keys::QueryResult;
use crate::state::AppState;

/// How long a remote server may take when the client names no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

type Claimed = BTreeMap<OwnedUserId, ruma::api::client::keys::claim_keys::v3::OneTimeKeys>;

fn failure(e: &str) -> Value {
    json!({"status": 503, "message": e})
}

/// Groups users by their server.
fn by_server<T: Clone>(
    requested: &BTreeMap<OwnedUserId, T>,
    servers: &[String],
) -> Vec<(OwnedServerName, BTreeMap<OwnedUserId, T>)> {
    servers
        .iter()
        .filter_map(|server| {
            let server = OwnedServerName::try_from(server.as_str()).ok()?;
            let users = requested
                .iter()
                .filter(|(user, _)| user.server_name() == server)
                .map(|(u, v)| (u.clone(), v.clone()))
                .collect();
            Some((server, users))
        })
        .collect()
}

/// Asks each server for its users' device and cross-signing keys and merges the answers.
pub async fn query(
    state: &AppState,
    requested: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    servers: &[String],
    timeout: Duration,
    result: &mut QueryResult,
) {
    let asks = by_server(requested, servers).into_iter().map(|(server, users)| async move {
        let request = get_keys::v1::Request::new(users);
        let answer = tokio::time::timeout(timeout, state.federation.send(&server, &state.signing_key, request)).await;
        (server, answer)
    });
    for (server, answer) in join_all(asks).await {
        match answer {
            Ok(Ok(response)) => {
                let own = |user: &OwnedUserId| user.server_name() == server;
                result.device_keys.extend(response.device_keys.into_iter().filter(|(u, _)| own(u)));
                result.master_keys.extend(response.master_keys.into_iter().filter(|(u, _)| own(u)));
                result.self_signing_keys.extend(response.self_signing_keys.into_iter().filter(|(u, _)| own(u)));
            }
            Ok(Err(e)) => {
                tracing::info!(%server, error = %e, "remote key query failed");
                result.failures.insert(server.to_string(), failure("The server did not answer the key query"));
            }
            Err(_) => {
                result.failures.insert(server.to_string(), failure("The server did not answer in time"));
            }
        }
    }
}

/// Claims one-time keys of other servers' devices.
pub async fn claim(
    state: &AppState,
    requested: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    servers: &[String],
    timeout: Duration,
    claimed: &mut Claimed,
    failures: &mut BTreeMap<String, Value>,
) {
    let asks = by_server(requested, servers).into_iter().map(|(server, users)| async move {
        let claims = users
            .into_iter()
            .map(|(user, devices)| {
                let devices =
                    devices.into_iter().map(|(device, algorithm)| (device, algorithm.as_str().into())).collect();
                (user, devices)
            })
            .collect();
        let request = claim_keys::v1::Request::new(claims);
        let answer = tokio::time::timeout(timeout, state.federation.send(&server, &state.signing_key, request)).await;
        (server, answer)
    });
    for (server, answer) in join_all(asks).await {
        match answer {
            Ok(Ok(response)) => {
                claimed.extend(response.one_time_keys.into_iter().filter(|(user, _)| user.server_name() == server));
            }
            Ok(Err(e)) => {
                tracing::info!(%server, error = %e, "remote key claim failed");
                failures.insert(server.to_string(), failure("The server did not answer the key claim"));
            }
            Err(_) => {
                failures.insert(server.to_string(), failure("The server did not answer in time"));
            }
        }
    }
}
