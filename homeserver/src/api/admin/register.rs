//! `GET/POST /_synapse/admin/v1/register`: shared-secret registration. Authenticated by the
//! shared secret (an HMAC in the body), not by an access token, as in Synapse.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use serde_json::{Map, Value, json};

use ruma::OwnedUserId;

use super::{AdminJson, audited, json};
use crate::accounts::shared_secret::{self, SharedSecretRegistration};
use crate::error::{Error, Result};
use crate::state::AppState;

/// The audit log's actor for accounts made with the shared secret.
const ACTOR: &str = "shared_secret";
/// Longest password accepted, in bytes (as Synapse).
const MAX_PASSWORD_BYTES: usize = 512;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.route("/_synapse/admin/v1/register", get(nonce).post(register))
}

async fn nonce(State(state): State<AppState>) -> Result<Response> {
    Ok(json(StatusCode::OK, json!({"nonce": shared_secret::new_nonce(&state)?})))
}

fn text(body: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(Error::invalid_param(format!("{key} must be a string"))),
    }
}

fn required(body: &Map<String, Value>, key: &str) -> Result<String> {
    text(body, key)?.ok_or_else(|| Error::missing_param(format!("{key} must be specified")))
}

fn parse(body: &Map<String, Value>) -> Result<SharedSecretRegistration> {
    let password = required(body, "password")?;
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid_param("Invalid password"));
    }
    let admin = match body.get("admin") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(admin)) => *admin,
        Some(_) => return Err(Error::invalid_param("admin must be a boolean")),
    };
    Ok(SharedSecretRegistration {
        nonce: required(body, "nonce")?,
        username: required(body, "username")?,
        password,
        displayname: text(body, "displayname")?,
        admin,
        user_type: text(body, "user_type")?,
        mac: required(body, "mac")?,
    })
}

async fn register(State(state): State<AppState>, AdminJson(body): AdminJson<Map<String, Value>>) -> Result<Response> {
    let request = parse(&body)?;
    // Attempts without the secret are refused unrecorded, like requests with a bad token.
    shared_secret::verify(&state, &request)?;
    let username = request.username.clone();
    let params = json!({"admin": request.admin, "displayname": request.displayname});
    let work = {
        let state = state.clone();
        async move { shared_secret::register(&state, request).await }
    };
    let label = move |result: &Result<_>| {
        let target = result.as_ref().map_or(username, |(user_id, _, _): &(OwnedUserId, _, _)| user_id.to_string());
        ("create_user", Some(target))
    };
    let (user_id, device_id, tokens) = audited(&state, ACTOR, params, work, label).await?;
    Ok(json(
        StatusCode::OK,
        json!({
            "user_id": user_id,
            "device_id": device_id,
            "access_token": tokens.access_token,
            "home_server": state.server_name,
        }),
    ))
}
