//! Media: a user's uploads (list, delete), delete by ID or by age and size, quarantine.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{delete, get, post};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, AdminQuery, Page, audited, backwards, json, local_user_id};
use crate::accounts::admin as account_admin;
use crate::api::PathParams;
use crate::error::{Error, Result};
use crate::media::admin as media_admin;
use crate::state::AppState;
use crate::storage::{MediaOrder, MediaRow};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_synapse/admin/v1/users/{user_id}/media", get(user_media).delete(delete_user_media))
        .route("/_synapse/admin/v1/media/{server_name}/{media_id}", delete(delete_one))
        .route("/_synapse/admin/v1/media/delete", post(delete_old))
        .route("/_synapse/admin/v1/media/{server_name}/delete", post(delete_old_of_server))
        .route("/_synapse/admin/v1/media/quarantine/{server_name}/{media_id}", post(quarantine))
        .route("/_synapse/admin/v1/media/unquarantine/{server_name}/{media_id}", post(unquarantine))
        .route("/_synapse/admin/v1/room/{room_id}/media/quarantine", post(quarantine_room))
        .route("/_synapse/admin/v1/user/{user_id}/media/quarantine", post(quarantine_user))
}

/// A media item as Synapse's admin API lists one. Accesses are not tracked: the last access
/// is reported as the upload, as Synapse records it on upload.
fn media_json(media: &MediaRow) -> Value {
    json!({
        "media_id": media.media_id,
        "media_type": media.content_type,
        "media_length": media.size.unwrap_or(0),
        "upload_name": media.filename,
        "created_ts": media.created_ts,
        "last_access_ts": media.created_ts,
        "quarantined_by": media.quarantined_by,
        "safe_from_quarantine": false,
    })
}

#[derive(Debug, Deserialize)]
struct ListParams {
    from: Option<String>,
    limit: Option<i64>,
    order_by: Option<String>,
    dir: Option<String>,
}

async fn user_media(
    State(state): State<AppState>,
    _admin: Admin,
    PathParams(user_id): PathParams<String>,
    AdminQuery(params): AdminQuery<ListParams>,
) -> Result<Response> {
    let user_id = local_user_id(&state, &user_id)?;
    account_admin::existing_user(&state, &user_id).await?;
    let page = Page::parse(params.from.as_deref(), params.limit, 100)?;
    let order = match params.order_by.as_deref() {
        None | Some("created_ts" | "last_access_ts") => MediaOrder::CreatedTs,
        Some("media_id" | "safe_from_quarantine") => MediaOrder::MediaId,
        Some("upload_name") => MediaOrder::UploadName,
        Some("media_length") => MediaOrder::MediaLength,
        Some("media_type") => MediaOrder::MediaType,
        Some("quarantined_by") => MediaOrder::QuarantinedBy,
        Some(other) => return Err(Error::invalid_param(format!("Unknown value for order_by: {other}"))),
    };
    let descending = backwards(params.dir.as_deref(), false)?;
    let (media, total) = state.storage.user_media(user_id.as_str(), order, descending, page.from, page.limit).await?;
    let mut body = json!({"media": media.iter().map(media_json).collect::<Vec<_>>(), "total": total});
    if let Some(next) = page.next(media.len(), total) {
        body["next_token"] = json!(next);
    }
    Ok(json(StatusCode::OK, body))
}

fn deleted_json(deleted: &[String]) -> Response {
    json(StatusCode::OK, json!({"deleted_media": deleted, "total": deleted.len()}))
}

fn require_local(state: &AppState, server_name: &str) -> Result<()> {
    if server_name != state.server_name.as_str() {
        return Err(Error::invalid_param("Can only delete local media"));
    }
    Ok(())
}

async fn delete_user_media(
    State(state): State<AppState>,
    admin: Admin,
    PathParams(user_id): PathParams<String>,
) -> Result<Response> {
    let user_id = local_user_id(&state, &user_id)?;
    account_admin::existing_user(&state, &user_id).await?;
    let target = user_id.to_string();
    let work = {
        let state = state.clone();
        async move {
            let ids = state.storage.user_media_ids(state.server_name.as_str(), user_id.as_str()).await?;
            media_admin::delete_local(&state, &ids).await
        }
    };
    let deleted = audited(&state, admin.actor(), json!({}), work, move |_| ("delete_user_media", Some(target))).await?;
    Ok(deleted_json(&deleted))
}

async fn delete_one(
    State(state): State<AppState>,
    admin: Admin,
    PathParams((server_name, media_id)): PathParams<(String, String)>,
) -> Result<Response> {
    require_local(&state, &server_name)?;
    let target = format!("mxc://{server_name}/{media_id}");
    let work = {
        let state = state.clone();
        async move {
            let deleted = media_admin::delete_local(&state, std::slice::from_ref(&media_id)).await?;
            if deleted.is_empty() {
                return Err(Error::not_found("Unknown media"));
            }
            Ok(deleted)
        }
    };
    let deleted = audited(&state, admin.actor(), json!({}), work, move |_| ("delete_media", Some(target))).await?;
    Ok(deleted_json(&deleted))
}

#[derive(Debug, Deserialize)]
struct DeleteOldParams {
    before_ts: Option<i64>,
    size_gt: Option<i64>,
    keep_profiles: Option<bool>,
}

async fn delete_old(
    State(state): State<AppState>,
    admin: Admin,
    AdminQuery(params): AdminQuery<DeleteOldParams>,
) -> Result<Response> {
    delete_old_media(state, admin, params).await
}

async fn delete_old_of_server(
    State(state): State<AppState>,
    admin: Admin,
    PathParams(server_name): PathParams<String>,
    AdminQuery(params): AdminQuery<DeleteOldParams>,
) -> Result<Response> {
    require_local(&state, &server_name)?;
    delete_old_media(state, admin, params).await
}

async fn delete_old_media(state: AppState, admin: Admin, params: DeleteOldParams) -> Result<Response> {
    let before_ts =
        params.before_ts.ok_or_else(|| Error::missing_param("Missing integer query parameter 'before_ts'"))?;
    let size_gt = params.size_gt.unwrap_or(0);
    let keep_profiles = params.keep_profiles.unwrap_or(true);
    if before_ts < 0 {
        return Err(Error::invalid_param("Query parameter before_ts must be a positive integer."));
    }
    if size_gt < 0 {
        return Err(Error::invalid_param("Query parameter size_gt must be a string representing a positive integer."));
    }
    let audit_params = json!({"before_ts": before_ts, "size_gt": size_gt, "keep_profiles": keep_profiles});
    let work = {
        let state = state.clone();
        async move { media_admin::delete_old(&state, before_ts, size_gt, keep_profiles).await }
    };
    let deleted = audited(&state, admin.actor(), audit_params, work, |_| ("delete_old_media", None)).await?;
    Ok(deleted_json(&deleted))
}

async fn set_quarantine(
    state: AppState,
    admin: Admin,
    server_name: String,
    media_id: String,
    quarantine: bool,
) -> Result<Response> {
    let target = format!("mxc://{server_name}/{media_id}");
    let actor = admin.actor().to_owned();
    let work = {
        let state = state.clone();
        async move {
            let by = quarantine.then_some(actor.as_str());
            media_admin::set_quarantine(&state, &server_name, &media_id, by).await
        }
    };
    let action = if quarantine { "quarantine_media" } else { "unquarantine_media" };
    audited(&state, admin.actor(), json!({}), work, move |_| (action, Some(target))).await?;
    Ok(json(StatusCode::OK, json!({})))
}

async fn quarantine(
    State(state): State<AppState>,
    admin: Admin,
    PathParams((server_name, media_id)): PathParams<(String, String)>,
) -> Result<Response> {
    set_quarantine(state, admin, server_name, media_id, true).await
}

async fn unquarantine(
    State(state): State<AppState>,
    admin: Admin,
    PathParams((server_name, media_id)): PathParams<(String, String)>,
) -> Result<Response> {
    set_quarantine(state, admin, server_name, media_id, false).await
}

async fn quarantine_room(
    State(state): State<AppState>,
    admin: Admin,
    PathParams(room_id): PathParams<String>,
) -> Result<Response> {
    state.storage.room(&room_id).await?.ok_or_else(|| Error::not_found("Room not found"))?;
    let actor = admin.actor().to_owned();
    let target = room_id.clone();
    let work = {
        let state = state.clone();
        async move { media_admin::quarantine_room_media(&state, &room_id, &actor).await }
    };
    let count =
        audited(&state, admin.actor(), json!({}), work, move |_| ("quarantine_room_media", Some(target))).await?;
    Ok(json(StatusCode::OK, json!({"num_quarantined": count})))
}

async fn quarantine_user(
    State(state): State<AppState>,
    admin: Admin,
    PathParams(user_id): PathParams<String>,
) -> Result<Response> {
    let user_id = local_user_id(&state, &user_id)?;
    account_admin::existing_user(&state, &user_id).await?;
    let actor = admin.actor().to_owned();
    let target = user_id.to_string();
    let work = {
        let state = state.clone();
        async move { media_admin::quarantine_user_media(&state, user_id.as_str(), &actor).await }
    };
    let count =
        audited(&state, admin.actor(), json!({}), work, move |_| ("quarantine_user_media", Some(target))).await?;
    Ok(json(StatusCode::OK, json!({"num_quarantined": count})))
}
