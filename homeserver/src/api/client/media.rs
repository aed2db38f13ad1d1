//! Media endpoints. These stream request and response bodies, so they are plain axum handlers
//! rather than ruma request types (which buffer the whole body).
//!
//! Authenticated (spec v1.11): `/_matrix/client/v1/media/{config,download,thumbnail}`. Uploads:
//! `/_matrix/media/v3/upload`, `/_matrix/media/v1/create`, `PUT /_matrix/media/v3/upload/…`.
//! Legacy unauthenticated `/_matrix/media/v3/{download,thumbnail}` serve only media older than
//! the configured cut-off (none by default).

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::StatusCode;
use serde_json::json;

use crate::api::authed_from_parts as authed;
use crate::error::{Error, Result};
use crate::media::thumbnail::Method;
use crate::media::{self, Download, ThumbnailRequest, UploadMeta, headers};
use crate::state::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_matrix/media/v3/upload", post(upload))
        .route("/_matrix/media/v1/create", post(create))
        .route("/_matrix/media/v3/upload/{server_name}/{media_id}", put(upload_reserved))
        .route("/_matrix/client/v1/media/config", get(config))
        .route("/_matrix/media/v3/config", get(config))
        .route("/_matrix/client/v1/media/download/{server_name}/{media_id}", get(download))
        .route("/_matrix/client/v1/media/download/{server_name}/{media_id}/{file_name}", get(download_as))
        .route("/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}", get(thumbnail))
        .route("/_matrix/media/v3/download/{server_name}/{media_id}", get(legacy_download))
        .route("/_matrix/media/v3/download/{server_name}/{media_id}/{file_name}", get(legacy_download_as))
        .route("/_matrix/media/v3/thumbnail/{server_name}/{media_id}", get(legacy_thumbnail))
        .route("/_matrix/client/v1/media/preview_url", get(preview_url))
        .route("/_matrix/media/v3/preview_url", get(preview_url))
}

type Params = Query<HashMap<String, String>>;

fn upload_meta<'a>(request: &'a Request, params: &'a HashMap<String, String>) -> UploadMeta<'a> {
    let header = |name: http::HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok());
    UploadMeta {
        content_type: header(http::header::CONTENT_TYPE),
        filename: params.get("filename").map(String::as_str),
        declared_length: header(http::header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
    }
}

async fn upload(State(state): State<AppState>, Query(params): Params, request: Request) -> Result<Response> {
    let authed = authed(&state, request.headers(), &params).await?;
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts, Body::empty());
    let content_uri = media::upload(&state, &authed, upload_meta(&request, &params), body).await?;
    Ok(axum::Json(json!({"content_uri": content_uri})).into_response())
}

async fn create(State(state): State<AppState>, Query(params): Params, request: Request) -> Result<Response> {
    let authed = authed(&state, request.headers(), &params).await?;
    let (content_uri, expires) = media::create(&state, &authed).await?;
    Ok(axum::Json(json!({"content_uri": content_uri, "unused_expires_at": expires})).into_response())
}

async fn upload_reserved(
    State(state): State<AppState>,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(params): Params,
    request: Request,
) -> Result<Response> {
    let authed = authed(&state, request.headers(), &params).await?;
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts, Body::empty());
    let meta = upload_meta(&request, &params);
    media::upload_reserved(&state, &authed, &server_name, &media_id, meta, body).await?;
    Ok(axum::Json(json!({})).into_response())
}

async fn config(State(state): State<AppState>, Query(params): Params, headers: http::HeaderMap) -> Result<Response> {
    authed(&state, &headers, &params).await?;
    Ok(axum::Json(json!({"m.upload.size": state.config.media.max_upload_bytes})).into_response())
}

/// `timeout_ms`: how long to wait for media that is reserved but not uploaded yet.
pub(crate) fn wait(params: &HashMap<String, String>) -> Result<Option<Duration>> {
    params
        .get("timeout_ms")
        .map(|v| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| Error::invalid_param("timeout_ms must be an integer"))
        })
        .transpose()
}

async fn download(
    State(state): State<AppState>,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(params): Params,
    headers: http::HeaderMap,
) -> Result<Response> {
    authed(&state, &headers, &params).await?;
    let download = media::download(&state, &server_name, &media_id, wait(&params)?, false).await?;
    Ok(respond(download, None))
}

async fn download_as(
    State(state): State<AppState>,
    Path((server_name, media_id, file_name)): Path<(String, String, String)>,
    Query(params): Params,
    headers: http::HeaderMap,
) -> Result<Response> {
    authed(&state, &headers, &params).await?;
    let download = media::download(&state, &server_name, &media_id, wait(&params)?, false).await?;
    Ok(respond(download, Some(file_name)))
}

async fn legacy_download(
    State(state): State<AppState>,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(params): Params,
) -> Result<Response> {
    let download = media::download(&state, &server_name, &media_id, wait(&params)?, true).await?;
    Ok(respond(download, None))
}

async fn legacy_download_as(
    State(state): State<AppState>,
    Path((server_name, media_id, file_name)): Path<(String, String, String)>,
    Query(params): Params,
) -> Result<Response> {
    let download = media::download(&state, &server_name, &media_id, wait(&params)?, true).await?;
    Ok(respond(download, Some(file_name)))
}

pub(crate) fn thumbnail_request(params: &HashMap<String, String>, legacy: bool) -> Result<ThumbnailRequest> {
    let dimension = |name: &str| -> Result<u32> {
        let value = params.get(name).ok_or_else(|| Error::missing_param(format!("{name} is required")))?;
        value.parse().map_err(|_| Error::invalid_param(format!("{name} must be a positive integer")))
    };
    let method = match params.get("method").map(String::as_str) {
        None | Some("scale") => Method::Scale,
        Some("crop") => Method::Crop,
        Some(_) => return Err(Error::invalid_param("method must be crop or scale")),
    };
    Ok(ThumbnailRequest {
        width: dimension("width")?,
        height: dimension("height")?,
        method,
        wait: wait(params)?,
        legacy,
    })
}

async fn thumbnail(
    State(state): State<AppState>,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(params): Params,
    headers: http::HeaderMap,
) -> Result<Response> {
    authed(&state, &headers, &params).await?;
    let request = thumbnail_request(&params, false)?;
    Ok(respond(media::thumbnail(&state, &server_name, &media_id, request).await?, None))
}

async fn legacy_thumbnail(
    State(state): State<AppState>,
    Path((server_name, media_id)): Path<(String, String)>,
    Query(params): Params,
) -> Result<Response> {
    let request = thumbnail_request(&params, true)?;
    Ok(respond(media::thumbnail(&state, &server_name, &media_id, request).await?, None))
}

/// Streams the content with the safe-serving headers.
fn respond(download: Download, file_name: Option<String>) -> Response {
    let filename = file_name.or(download.filename);
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(download.reader)).into_response();
    *response.status_mut() = StatusCode::OK;
    headers::safe_media_headers(response.headers_mut(), &download.content_type, filename.as_deref());
    if let Ok(length) = http::HeaderValue::from_str(&download.size.to_string()) {
        response.headers_mut().insert(http::header::CONTENT_LENGTH, length);
    }
    response
}

/// `GET /preview_url?url=…&ts=…`; `ts` (the time the client wants a preview of) is ignored: we
/// can only fetch the page as it is now.
async fn preview_url(
    State(state): State<AppState>,
    Query(params): Params,
    headers: http::HeaderMap,
) -> Result<Response> {
    let authed = authed(&state, &headers, &params).await?;
    let url = params.get("url").ok_or_else(|| Error::missing_param("url is required"))?;
    let preview = media::preview(&state, &authed, url).await?;
    Ok(axum::Json(preview.as_ref()).into_response())
}
