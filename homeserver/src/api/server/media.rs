//! Federation media (spec v1.11): other servers fetch our media here, signed with X-Matrix.
//! Plain axum handlers, because ruma's response type holds the whole file in memory; the body
//! is `multipart/mixed` with an empty JSON metadata part and the content streamed after it.

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt as _;
use http::StatusCode;

use crate::api::client::media::{thumbnail_request, wait};
use crate::api::ruma::authenticate_server;
use crate::error::Result;
use crate::media::{self, Download, headers};
use crate::state::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/_matrix/federation/v1/media/download/{media_id}", get(download))
        .route("/_matrix/federation/v1/media/thumbnail/{media_id}", get(thumbnail))
}

type Params = Query<HashMap<String, String>>;

/// The X-Matrix check of the `Ruma<T>` extractor; a GET has no body to sign.
async fn authenticate(state: &AppState, request: Request) -> Result<()> {
    let (parts, _) = request.into_parts();
    authenticate_server(&http::Request::from_parts(parts, &[][..]), state).await?;
    Ok(())
}

async fn download(
    State(state): State<AppState>,
    Path(media_id): Path<String>,
    Query(params): Params,
    request: Request,
) -> Result<Response> {
    authenticate(&state, request).await?;
    let download = media::download(&state, state.server_name.as_str(), &media_id, wait(&params)?, false).await?;
    Ok(multipart(download))
}

async fn thumbnail(
    State(state): State<AppState>,
    Path(media_id): Path<String>,
    Query(params): Params,
    request: Request,
) -> Result<Response> {
    authenticate(&state, request).await?;
    let thumbnail_request = thumbnail_request(&params, false)?;
    let download = media::thumbnail(&state, state.server_name.as_str(), &media_id, thumbnail_request).await?;
    Ok(multipart(download))
}

/// The content between the metadata part and the closing boundary, streamed.
fn multipart(download: Download) -> Response {
    let boundary = crate::accounts::tokens::new_opaque_id(32);
    let disposition = headers::content_disposition(&download.content_type, download.filename.as_deref());
    let (head, tail) = federation::multipart::media_body_frame(&boundary, &download.content_type, &disposition);
    let content = tokio_util::io::ReaderStream::new(download.reader);
    let body = futures_util::stream::once(async move { Ok(bytes::Bytes::from(head)) })
        .chain(content)
        .chain(futures_util::stream::once(async move { Ok(bytes::Bytes::from(tail)) }));
    let mut response = Body::from_stream(body).into_response();
    *response.status_mut() = StatusCode::OK;
    if let Ok(content_type) = http::HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}")) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, content_type);
    }
    response
}
