//! Other servers' media: fetched once from the origin over federation (multipart/mixed, a
//! `Location` part followed with a plain GET), bounded while it streams to disk, then kept in
//! the store under its origin and served from there.

use std::time::Duration;

use federation::client::FederationError;
use federation::multipart::{MediaPart, MediaPartReader};
use http::StatusCode;
use ruma::ServerName;
use ruma::api::OutgoingRequest;
use ruma::api::federation::authenticated_media::{get_content, get_content_thumbnail};
use ruma::api::federation::authentication::ServerSignatures;
use ruma::api::path_builder::SinglePath;

use super::store::{is_valid_media_id, remote_thumbnail_key};
use super::thumbnail::Method;
use super::{Download, Received, Sink};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::{MediaRow, ThumbnailRow, UploadedContent};

/// How long one remote fetch may take in all, on top of the origin's wait for a pending upload.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// The cached row of a remote media item, fetching it from its origin first if needed and
/// `may_fetch`.
pub async fn media(
    state: &AppState,
    origin: &str,
    media_id: &str,
    wait: Duration,
    may_fetch: bool,
) -> Result<MediaRow> {
    let not_found = || Error::not_found("Media not found");
    let server = checked_names(origin, media_id)?;
    if let Some(row) = cached(state, origin, media_id).await? {
        return Ok(row);
    }
    if !may_fetch {
        return Err(not_found());
    }
    if !state.config.federation.enabled {
        return Err(Error::not_found("Federation is disabled: other servers' media is not available"));
    }
    let _turn = state.media.remote_fetches.turn(format!("{origin}/{media_id}")).await;
    // Whoever held the lock before may have fetched it.
    if let Some(row) = cached(state, origin, media_id).await? {
        return Ok(row);
    }
    fetch(state, server, media_id, wait).await?;
    cached(state, origin, media_id).await?.ok_or_else(not_found)
}

/// The origin as a server name, once it and the media ID are fit to be store keys.
fn checked_names<'a>(origin: &'a str, media_id: &str) -> Result<&'a ServerName> {
    let not_found = || Error::not_found("Media not found");
    let Ok(server) = <&ServerName>::try_from(origin) else { return Err(not_found()) };
    // The origin names a directory of the store: `.` and `..` pass as DNS names but must not.
    if !is_valid_media_id(media_id) || origin.starts_with('.') || origin.contains("..") {
        return Err(not_found());
    }
    Ok(server)
}

/// Whether the whole item is in the cache.
pub async fn is_cached(state: &AppState, origin: &str, media_id: &str) -> Result<bool> {
    Ok(checked_names(origin, media_id).is_ok() && cached(state, origin, media_id).await?.is_some())
}

/// A thumbnail of a remote item not fetched whole: the origin's, fetched once per size and kept.
pub async fn thumbnail(
    state: &AppState,
    origin: &str,
    media_id: &str,
    (width, height, method): (u32, u32, Method),
    wait: Duration,
    may_fetch: bool,
) -> Result<Download> {
    let server = checked_names(origin, media_id)?;
    let (w, h, m) = (i64::from(width), i64::from(height), method.as_str());
    let mut row = state.storage.remote_thumbnail(origin, media_id, w, h, m).await?;
    if row.is_none() {
        if !may_fetch || !state.config.federation.enabled {
            return Err(Error::not_found("Media not found"));
        }
        let _turn = state.media.remote_fetches.turn(format!("{origin}/{media_id}/{w}x{h}-{m}")).await;
        row = state.storage.remote_thumbnail(origin, media_id, w, h, m).await?;
        if row.is_none() {
            let mut request = get_content_thumbnail::v1::Request::new(media_id.to_owned(), width.into(), height.into());
            request.method = Some(match method {
                Method::Crop => ruma::media::Method::Crop,
                Method::Scale => ruma::media::Method::Scale,
            });
            request.timeout_ms = wait;
            let fetched = download(state, server, request, wait).await?;
            let thumbnail = ThumbnailRow {
                width: w,
                height: h,
                method: m.to_owned(),
                content_type: content_type_of(&fetched).to_owned(),
                size: fetched.received.size,
            };
            let key = remote_thumbnail_key(origin, media_id, w, h, m);
            if let Err(e) = state.media.store.put_file(&key, &fetched.received.temp).await {
                let _ = tokio::fs::remove_file(&fetched.received.temp).await;
                return Err(Error::internal(format!("media store: {e}")));
            }
            state.storage.insert_remote_thumbnail(origin, media_id, &thumbnail, state.now_ms()).await?;
            row = Some(thumbnail);
        }
    }
    let row = row.ok_or_else(|| Error::not_found("Media not found"))?;
    let key = remote_thumbnail_key(origin, media_id, w, h, m);
    let reader = state.media.store.open(&key).await.map_err(|e| Error::internal(format!("media store: {e}")))?;
    let reader = reader.ok_or_else(|| Error::not_found("Thumbnail content is missing"))?;
    Ok(Download { content_type: row.content_type, filename: None, size: row.size, reader })
}

/// The content type the origin gave, if it can be a header value.
fn content_type_of(fetched: &Fetched) -> &str {
    fetched
        .content_type
        .as_deref()
        .filter(|t| !t.is_empty() && http::HeaderValue::from_str(t).is_ok())
        .unwrap_or("application/octet-stream")
}

async fn cached(state: &AppState, origin: &str, media_id: &str) -> Result<Option<MediaRow>> {
    Ok(state.storage.media(origin, media_id).await?.filter(|row| row.size.is_some()))
}

/// What the origin said about the content.
struct Fetched {
    received: Received,
    content_type: Option<String>,
    filename: Option<String>,
}

async fn fetch(state: &AppState, origin: &ServerName, media_id: &str, wait: Duration) -> Result<()> {
    let mut request = get_content::v1::Request::new(media_id.to_owned());
    request.timeout_ms = wait;
    let fetched = download(state, origin, request, wait).await?;
    let content = UploadedContent {
        content_type: content_type_of(&fetched),
        filename: fetched.filename.as_deref().filter(|f| !f.is_empty()),
        size: fetched.received.size,
        sha256: &fetched.received.sha256,
    };
    super::store_received(state, origin.as_str(), media_id, &fetched.received).await?;
    state.storage.insert_remote_media(origin.as_str(), media_id, &content, state.now_ms()).await?;
    Ok(())
}

/// Streams the origin's answer to a federation media request to a temporary file.
async fn download<R>(state: &AppState, origin: &ServerName, request: R, wait: Duration) -> Result<Fetched>
where
    R: OutgoingRequest<Authentication = ServerSignatures, PathBuilder = SinglePath>,
{
    let mut response = state
        .federation
        .send_streamed(origin, &state.signing_key, request, FETCH_TIMEOUT + wait)
        .await
        .map_err(remote_error)?;
    let content_type = response.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let mut reader = MediaPartReader::new(content_type.unwrap_or_default()).map_err(|e| invalid(origin, e))?;
    let limit = state.config.media.max_upload_bytes;
    let mut sink = Sink::create(state, limit).await?;
    let mut part = None;
    let mut content = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(remote_error)? {
        content.clear();
        if let Some(head) = reader.feed(&chunk, &mut content).map_err(|e| invalid(origin, e))? {
            part = Some(head);
        }
        if !sink.write(&content).await? {
            return Err(too_large(limit));
        }
        if reader.is_done() {
            break;
        }
    }
    reader.finish().map_err(|e| invalid(origin, e))?;
    match part {
        Some(MediaPart::File { content_type, content_disposition }) => {
            let filename = content_disposition.as_deref().and_then(filename_of);
            Ok(Fetched { received: sink.finish().await?, content_type, filename })
        }
        Some(MediaPart::Location(url)) => follow_location(state, origin, &url, sink).await,
        None => Err(invalid(origin, federation::multipart::MultipartError::Truncated)),
    }
}

/// The content is elsewhere (a CDN): a plain GET, as guarded as any URL chosen by others.
async fn follow_location(state: &AppState, origin: &ServerName, url: &str, mut sink: Sink) -> Result<Fetched> {
    let elsewhere =
        || Error::custom(StatusCode::BAD_GATEWAY, "M_UNKNOWN", format!("{origin} serves this media elsewhere"));
    let mut response = state.media.fetcher.get(url, FETCH_TIMEOUT).await.map_err(|e| {
        tracing::info!(%origin, error = %e, "remote media location not fetched");
        elsewhere()
    })?;
    if !response.status().is_success() {
        return Err(elsewhere());
    }
    let header = |name| response.headers().get(name).and_then(|v: &http::HeaderValue| v.to_str().ok());
    let content_type = header(http::header::CONTENT_TYPE).map(str::to_owned);
    let filename = header(http::header::CONTENT_DISPOSITION).and_then(filename_of);
    let limit = state.config.media.max_upload_bytes;
    let read = async {
        while let Some(chunk) = response.chunk().await.map_err(|_| elsewhere())? {
            if !sink.write(&chunk).await? {
                return Err(too_large(limit));
            }
        }
        Ok(())
    };
    tokio::time::timeout(FETCH_TIMEOUT, read).await.map_err(|_| {
        Error::custom(StatusCode::GATEWAY_TIMEOUT, "M_UNKNOWN", format!("{origin} did not answer in time"))
    })??;
    Ok(Fetched { received: sink.finish().await?, content_type, filename })
}

fn filename_of(content_disposition: &str) -> Option<String> {
    ruma::http_headers::ContentDisposition::try_from(content_disposition.as_bytes()).ok()?.filename
}

fn too_large(limit: u64) -> Error {
    // The spec's answer for remote content larger than we serve.
    Error::custom(StatusCode::BAD_GATEWAY, "M_TOO_LARGE", format!("The remote content is larger than {limit} bytes"))
}

fn invalid(origin: &ServerName, e: impl std::fmt::Display) -> Error {
    tracing::info!(%origin, error = %e, "remote media response is malformed");
    Error::remote_invalid(origin)
}

/// 404 when the origin does not have it, 504 when it is slow, 502 for everything else; the
/// origin's own message is only logged.
fn remote_error(e: FederationError) -> Error {
    match e {
        FederationError::Remote { ref server, status, .. } if status != 404 && status != 403 => {
            tracing::info!(error = %e, "remote media request failed");
            Error::custom(StatusCode::BAD_GATEWAY, "M_UNKNOWN", format!("{server} could not serve this media"))
        }
        FederationError::Remote { server, status: 403, .. } => {
            Error::custom(StatusCode::BAD_GATEWAY, "M_UNKNOWN", format!("{server} refused to serve this media"))
        }
        other => Error::remote(other),
    }
}
