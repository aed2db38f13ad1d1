//! `GET /_myelin/admin/v1/access_log` (by user, room, time range; paged) and
//! `GET /_synapse/admin/v1/whois/{userId}` in Synapse's shape, both from the access log.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, AdminQuery, Page, json, local_user_id};
use crate::api::PathParams;
use crate::error::Result;
use crate::state::AppState;
use crate::storage::AccessLogQuery;

/// Most connections `whois` lists.
const WHOIS_CONNECTIONS: i64 = 100;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.route("/_myelin/admin/v1/access_log", get(list)).route("/_synapse/admin/v1/whois/{user_id}", get(whois))
}

#[derive(Debug, Deserialize)]
struct Params {
    /// The `next_token` of the previous page.
    from: Option<String>,
    limit: Option<i64>,
    user_id: Option<String>,
    room_id: Option<String>,
    /// Milliseconds since the Unix epoch, inclusive.
    since: Option<i64>,
    until: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    AdminQuery(params): AdminQuery<Params>,
) -> Result<Response> {
    let page = Page::parse(params.from.as_deref(), params.limit, 100)?;
    let query = AccessLogQuery {
        user_id: params.user_id,
        room_id: params.room_id,
        since: params.since,
        until: params.until,
        after_id: page.from,
        limit: page.limit,
    };
    let rows = state.storage.access_log(&query).await?;
    let mut body = json!({"entries": rows});
    if let Some(last) = rows.last().filter(|_| i64::try_from(rows.len()).unwrap_or(i64::MAX) == page.limit) {
        body["next_token"] = json!(last.id.to_string());
    }
    Ok(json(StatusCode::OK, body))
}

async fn whois(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(user_id): PathParams<String>,
) -> Result<Response> {
    let user_id = local_user_id(&state, &user_id)?;
    crate::accounts::admin::existing_user(&state, &user_id).await?;
    let connections = state.storage.access_log_connections(user_id.as_str(), WHOIS_CONNECTIONS).await?;
    let mut devices: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for connection in connections {
        devices.entry(connection.device_id.unwrap_or_default()).or_default().push(json!({
            "ip": connection.ip,
            "last_seen": connection.last_seen,
            "user_agent": connection.user_agent,
        }));
    }
    let devices: serde_json::Map<String, Value> = devices
        .into_iter()
        .map(|(device_id, connections)| (device_id, json!({"sessions": [{"connections": connections}]})))
        .collect();
    Ok(json(StatusCode::OK, json!({"user_id": user_id, "devices": devices})))
}
