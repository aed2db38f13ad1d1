//! Users: list, query, create or modify, deactivate, reset password, joined rooms.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, AdminJson, AdminQuery, Page, audited, backwards, json, local_user_id};
use crate::accounts::admin::{self as account_admin, Upserted, UserChanges};
use crate::api::PathParams;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::{AdminUserRow, UserOrder, UserQuery};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_synapse/admin/v2/users", get(list))
        .route("/_synapse/admin/v2/users/{user_id}", get(query).put(create_or_modify))
        .route("/_synapse/admin/v1/deactivate/{user_id}", post(deactivate))
        .route("/_synapse/admin/v1/reset_password/{user_id}", post(reset_password))
        .route("/_synapse/admin/v1/users/{user_id}/joined_rooms", get(joined_rooms))
}

/// A user as Synapse's admin API describes one (fields Myelin has no notion of are constant).
fn user_json(user: &AdminUserRow) -> Value {
    json!({
        "name": user.user_id,
        "displayname": user.displayname,
        "avatar_url": user.avatar_url,
        "threepids": [],
        "external_ids": [],
        "is_guest": false,
        "admin": user.is_admin,
        "deactivated": user.deactivated,
        "erased": false,
        "shadow_banned": false,
        "locked": false,
        "suspended": false,
        "approved": true,
        "creation_ts": user.created_ts,
        "appservice_id": null,
        "consent_server_notice_sent": null,
        "consent_version": null,
        "consent_ts": null,
        "user_type": null,
    })
}

#[derive(Debug, Deserialize)]
struct ListParams {
    from: Option<String>,
    limit: Option<i64>,
    user_id: Option<String>,
    name: Option<String>,
    /// Myelin has no guests: `guests=true` and `false` list the same users.
    #[allow(dead_code)]
    guests: Option<bool>,
    deactivated: Option<bool>,
    admins: Option<bool>,
    order_by: Option<String>,
    dir: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    AdminQuery(params): AdminQuery<ListParams>,
) -> Result<Response> {
    let page = Page::parse(params.from.as_deref(), params.limit, 100)?;
    let order = match params.order_by.as_deref() {
        // Fields Myelin has no notion of (every user is alike in them) sort by user ID.
        None | Some("name" | "is_guest" | "user_type" | "shadow_banned" | "locked" | "last_seen_ts") => {
            UserOrder::UserId
        }
        Some("displayname") => UserOrder::DisplayName,
        Some("avatar_url") => UserOrder::AvatarUrl,
        Some("creation_ts") => UserOrder::CreationTs,
        Some("admin") => UserOrder::Admin,
        Some("deactivated") => UserOrder::Deactivated,
        Some(other) => return Err(Error::invalid_param(format!("Unknown value for order_by: {other}"))),
    };
    let query = UserQuery {
        user_id: params.user_id.filter(|v| !v.is_empty()),
        name: params.name.filter(|v| !v.is_empty()),
        include_deactivated: params.deactivated.unwrap_or(false),
        admins: params.admins,
        order,
        descending: backwards(params.dir.as_deref(), false)?,
        offset: page.from,
        limit: page.limit,
    };
    let (users, total) = state.storage.admin_users(&query).await?;
    let mut body = json!({
        "users": users.iter().map(user_json).collect::<Vec<_>>(),
        "total": total,
    });
    if let Some(next) = page.next(users.len(), total) {
        body["next_token"] = json!(next.to_string());
    }
    Ok(json(StatusCode::OK, body))
}

async fn query(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(user_id): PathParams<String>,
) -> Result<Response> {
    let user_id = local_user_id(&state, &user_id)?;
    let user = state.storage.admin_user(user_id.as_str()).await?.ok_or_else(|| Error::not_found("User not found"))?;
    Ok(json(StatusCode::OK, user_json(&user)))
}

#[derive(Debug, Deserialize)]
struct PutUser {
    password: Option<String>,
    logout_devices: Option<bool>,
    displayname: Option<String>,
    avatar_url: Option<String>,
    admin: Option<bool>,
    deactivated: Option<bool>,
}

async fn create_or_modify(
    State(state): State<AppState>,
    admin: Admin,
    PathParams(user_id): PathParams<String>,
    AdminJson(body): AdminJson<Value>,
) -> Result<Response> {
    let user_id = local_user_id(&state, &user_id)?;
    let put: PutUser = serde_json::from_value(body.clone()).map_err(|e| Error::bad_json(e.to_string()))?;
    let changes = UserChanges {
        password: put.password,
        logout_devices: put.logout_devices.unwrap_or(true),
        displayname: put.displayname,
        avatar_url: put.avatar_url,
        admin: put.admin,
        deactivated: put.deactivated,
    };
    let work = {
        let (state, caller, user_id) = (state.clone(), admin.0.user_id.clone(), user_id.clone());
        async move { account_admin::upsert_user(&state, &caller, &user_id, changes).await }
    };
    let target = user_id.to_string();
    let label = move |result: &Result<Upserted>| match result {
        Ok(Upserted::Created) => ("create_user", Some(target)),
        _ => ("modify_user", Some(target)),
    };
    let upserted = audited(&state, admin.actor(), body, work, label).await?;
    let user = state.storage.admin_user(user_id.as_str()).await?.ok_or_else(|| Error::not_found("User not found"))?;
    let status = if upserted == Upserted::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json(status, user_json(&user)))
}

#[derive(Debug, Deserialize)]
struct DeactivateBody {
    #[serde(default)]
    erase: bool,
}

async fn deactivate(
    State(state): State<AppState>,
    admin: Admin,
    PathParams(user_id): PathParams<String>,
    AdminJson(body): AdminJson<Value>,
) -> Result<Response> {
    let user_id = local_user_id(&state, &user_id)?;
    let parsed: DeactivateBody = serde_json::from_value(body.clone()).map_err(|e| Error::bad_json(e.to_string()))?;
    let target = user_id.to_string();
    let work = {
        let state = state.clone();
        async move { account_admin::deactivate(&state, &user_id, parsed.erase).await }
    };
    audited(&state, admin.actor(), body, work, move |_| ("deactivate_user", Some(target))).await?;
    Ok(json(StatusCode::OK, json!({"id_server_unbind_result": "success"})))
}

#[derive(Debug, Deserialize)]
struct ResetPasswordBody {
    new_password: Option<String>,
    logout_devices: Option<bool>,
}

async fn reset_password(
    State(state): State<AppState>,
    admin: Admin,
    PathParams(user_id): PathParams<String>,
    AdminJson(body): AdminJson<Value>,
) -> Result<Response> {
    let user_id = local_user_id(&state, &user_id)?;
    let parsed: ResetPasswordBody = serde_json::from_value(body.clone()).map_err(|e| Error::bad_json(e.to_string()))?;
    let target = user_id.to_string();
    let work = {
        let state = state.clone();
        async move {
            let password = parsed.new_password.ok_or_else(|| Error::missing_param("Missing params: new_password"))?;
            let logout = parsed.logout_devices.unwrap_or(true);
            crate::accounts::reset_password(&state, user_id.as_str(), password, logout).await.map(|_| ())
        }
    };
    audited(&state, admin.actor(), body, work, move |_| ("reset_password", Some(target))).await?;
    Ok(json(StatusCode::OK, json!({})))
}

async fn joined_rooms(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(user_id): PathParams<String>,
) -> Result<Response> {
    let user_id = local_user_id(&state, &user_id)?;
    account_admin::existing_user(&state, &user_id).await?;
    let rooms: Vec<String> = state
        .storage
        .memberships_of_user(user_id.as_str())
        .await?
        .into_iter()
        .filter(|m| m.membership == "join")
        .map(|m| m.room_id)
        .collect();
    Ok(json(StatusCode::OK, json!({"total": rooms.len(), "joined_rooms": rooms})))
}
