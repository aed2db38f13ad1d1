//! `/_synapse/admin/v1/registration_tokens`: list, query, create, update, delete.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Admin, AdminJson, AdminQuery, audited, json};
use crate::api::PathParams;
use crate::audit::fingerprint;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::RegistrationTokenRow;

const MAX_TOKEN_LEN: usize = 64;
const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_synapse/admin/v1/registration_tokens", get(list))
        .route("/_synapse/admin/v1/registration_tokens/new", post(create))
        .route("/_synapse/admin/v1/registration_tokens/{token}", get(query).put(update).delete(delete))
}

fn token_json(row: &RegistrationTokenRow) -> Value {
    json!({
        "token": row.token,
        "uses_allowed": row.uses_allowed,
        // Myelin consumes a use in the registration's own transaction: nothing is pending.
        "pending": 0,
        "completed": row.completed,
        "expiry_time": row.expiry_time,
    })
}

#[derive(Debug, Deserialize)]
struct ListParams {
    valid: Option<bool>,
}

async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    AdminQuery(params): AdminQuery<ListParams>,
) -> Result<Response> {
    let now = state.now_ms();
    let tokens: Vec<Value> = state
        .storage
        .registration_tokens()
        .await?
        .iter()
        .filter(|row| params.valid.is_none_or(|valid| row.is_valid(now) == valid))
        .map(token_json)
        .collect();
    Ok(json(StatusCode::OK, json!({"registration_tokens": tokens})))
}

fn unknown_token() -> Error {
    Error::not_found("No such registration token")
}

async fn query(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(token): PathParams<String>,
) -> Result<Response> {
    let row = state.storage.registration_token(&token).await?.ok_or_else(unknown_token)?;
    Ok(json(StatusCode::OK, token_json(&row)))
}

/// A nullable field's change: absent `None` (leave alone), null `Some(None)` (remove).
type Change = Option<Option<i64>>;

/// A nullable non-negative integer field.
fn optional_count(body: &Map<String, Value>, key: &str) -> Result<Change> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(value) => match value.as_i64() {
            Some(n) if n >= 0 => Ok(Some(Some(n))),
            _ => Err(Error::invalid_param(format!("{key} must be a non-negative integer or null"))),
        },
    }
}

fn limits(state: &AppState, body: &Map<String, Value>) -> Result<(Change, Change)> {
    let uses_allowed = optional_count(body, "uses_allowed")?;
    let expiry_time = optional_count(body, "expiry_time")?;
    if expiry_time.flatten().is_some_and(|t| t < state.now_ms()) {
        return Err(Error::invalid_param("expiry_time must not be in the past"));
    }
    Ok((uses_allowed, expiry_time))
}

fn object(body: Value) -> Result<Map<String, Value>> {
    match body {
        Value::Object(map) => Ok(map),
        _ => Err(Error::bad_json("The body must be a JSON object")),
    }
}

async fn create(State(state): State<AppState>, admin: Admin, AdminJson(body): AdminJson<Value>) -> Result<Response> {
    let body = object(body)?;
    let params = json!({"uses_allowed": body.get("uses_allowed"), "expiry_time": body.get("expiry_time")});
    let work = {
        let state = state.clone();
        async move { create_token(&state, &body).await }
    };
    let label = |result: &Result<RegistrationTokenRow>| {
        ("create_registration_token", result.as_ref().ok().map(|row| fingerprint(&row.token)))
    };
    let row = audited(&state, admin.actor(), params, work, label).await?;
    Ok(json(StatusCode::OK, token_json(&row)))
}

async fn create_token(state: &AppState, body: &Map<String, Value>) -> Result<RegistrationTokenRow> {
    let token = match body.get("token") {
        None | Some(Value::Null) => {
            let length = match body.get("length") {
                None | Some(Value::Null) => 16,
                Some(value) => value
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| (1..=MAX_TOKEN_LEN).contains(n))
                    .ok_or_else(|| Error::invalid_param("length must be an integer from 1 to 64"))?,
            };
            crate::accounts::tokens::random_string(TOKEN_CHARS, length)
        }
        Some(Value::String(token))
            if !token.is_empty() && token.len() <= MAX_TOKEN_LEN && token.bytes().all(|b| TOKEN_CHARS.contains(&b)) =>
        {
            token.clone()
        }
        Some(_) => {
            return Err(Error::invalid_param("token must be at most 64 characters from A-Z, a-z, 0-9 and . _ ~ -"));
        }
    };
    let (uses_allowed, expiry_time) = limits(state, body)?;
    let (uses_allowed, expiry_time) = (uses_allowed.flatten(), expiry_time.flatten());
    if !state.storage.create_registration_token(&token, uses_allowed, expiry_time, state.now_ms()).await? {
        return Err(Error::invalid_param(format!("Token already in use: {token}")));
    }
    Ok(RegistrationTokenRow { token, uses_allowed, completed: 0, expiry_time })
}

async fn update(
    State(state): State<AppState>,
    admin: Admin,
    PathParams(token): PathParams<String>,
    AdminJson(body): AdminJson<Value>,
) -> Result<Response> {
    let body = object(body)?;
    let params = Value::Object(body.clone());
    let target = fingerprint(&token);
    let work = {
        let state = state.clone();
        async move {
            let (uses_allowed, expiry_time) = limits(&state, &body)?;
            if !state.storage.update_registration_token(&token, uses_allowed, expiry_time).await? {
                return Err(unknown_token());
            }
            state.storage.registration_token(&token).await?.ok_or_else(unknown_token)
        }
    };
    let row =
        audited(&state, admin.actor(), params, work, move |_| ("update_registration_token", Some(target))).await?;
    Ok(json(StatusCode::OK, token_json(&row)))
}

async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    PathParams(token): PathParams<String>,
) -> Result<Response> {
    let target = fingerprint(&token);
    let work = {
        let state = state.clone();
        async move {
            match state.storage.delete_registration_token(&token).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(unknown_token()),
                Err(e) => Err(e.into()),
            }
        }
    };
    audited(&state, admin.actor(), json!({}), work, move |_| ("delete_registration_token", Some(target))).await?;
    Ok(json(StatusCode::OK, json!({})))
}
