//! The media repository: uploads streamed to the store, downloads streamed back, thumbnails
//! made once and reused.

pub mod admin;
pub mod encrypted_store;
pub mod headers;
mod in_flight;
pub mod opengraph;
mod preview;
mod remote;
pub mod store;
pub mod thumbnail;

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt as _;
use http::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Semaphore;

use self::store::{MediaStore, Reader, is_valid_media_id, media_key, thumbnail_key};
use self::thumbnail::{Method, ThumbnailError};
use crate::accounts::Authed;
use crate::config::MediaConfig;
use crate::error::{Error, Result};
use crate::safe_http::SafeHttp;
use crate::state::AppState;
use crate::storage::{MediaRow, ThumbnailRow, UploadedContent};

/// The media store and the bound on concurrent thumbnailing (CPU and memory heavy).
pub struct MediaRuntime {
    pub store: Box<dyn MediaStore>,
    thumbnail_permits: Semaphore,
    /// Remote media and previews being fetched, so concurrent requests fetch once.
    remote_fetches: in_flight::InFlight,
    preview_fetches: in_flight::InFlight,
    /// Requests to URLs chosen by others: previews, remote media redirects.
    fetcher: SafeHttp,
    previews: preview::PreviewCache,
}

impl MediaRuntime {
    pub fn new(store: Box<dyn MediaStore>, config: &MediaConfig) -> Self {
        // The allow-list was checked when the configuration was loaded.
        let allow = crate::safe_http::parse_allowlist(&config.url_preview_ip_allowlist).unwrap_or_default();
        Self {
            store,
            thumbnail_permits: Semaphore::new(2),
            remote_fetches: Default::default(),
            preview_fetches: Default::default(),
            fetcher: SafeHttp::new(allow).expect("the TLS backend of the HTTP client initialises"),
            previews: Default::default(),
        }
    }
}

pub use preview::preview;

/// The longest a download waits for a reserved media ID to be uploaded.
const MAX_WAIT: Duration = Duration::from_secs(60);
const DEFAULT_WAIT: Duration = Duration::from_secs(20);

/// What to send back for a download or a thumbnail.
pub struct Download {
    pub content_type: String,
    pub filename: Option<String>,
    pub size: i64,
    pub reader: Reader,
}

/// The upload's description from the request.
pub struct UploadMeta<'a> {
    pub content_type: Option<&'a str>,
    pub filename: Option<&'a str>,
    pub declared_length: Option<u64>,
}

fn new_media_id() -> String {
    crate::accounts::tokens::new_opaque_id(24)
}

fn mxc(state: &AppState, media_id: &str) -> String {
    format!("mxc://{}/{media_id}", state.server_name)
}

/// `POST /upload`: streams the body into the store and returns the content URI.
pub async fn upload(state: &AppState, authed: &Authed, meta: UploadMeta<'_>, body: axum::body::Body) -> Result<String> {
    let received = receive(state, &meta, body).await?;
    let media_id = new_media_id();
    let origin = state.server_name.as_str();
    let stored = store_received(state, origin, &media_id, &received).await;
    let content = received.content(&meta);
    let recorded = match stored {
        Ok(()) => {
            state.storage.insert_media(origin, &media_id, authed.user_id.as_str(), &content, state.now_ms()).await
        }
        Err(e) => return Err(e),
    };
    if let Err(e) = recorded {
        let _ = state.media.store.delete(&media_key(origin, &media_id)).await;
        return Err(e.into());
    }
    Ok(mxc(state, &media_id))
}

/// `POST /_matrix/media/v1/create`: reserves a media ID for a later upload.
pub async fn create(state: &AppState, authed: &Authed) -> Result<(String, i64)> {
    let media_id = new_media_id();
    let now = state.now_ms();
    let lifetime =
        i64::try_from(state.config.media.pending_upload_lifetime_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let expires = now.saturating_add(lifetime);
    let max_pending = i64::from(state.config.media.max_pending_uploads);
    let origin = state.server_name.as_str();
    if !state.storage.reserve_media(origin, &media_id, authed.user_id.as_str(), now, expires, max_pending).await? {
        return Err(Error::custom(StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED", "Too many pending uploads"));
    }
    Ok((mxc(state, &media_id), expires))
}

/// `PUT /upload/{serverName}/{mediaId}`: fills a reserved media ID, once, by its reserver.
pub async fn upload_reserved(
    state: &AppState,
    authed: &Authed,
    server_name: &str,
    media_id: &str,
    meta: UploadMeta<'_>,
    body: axum::body::Body,
) -> Result<()> {
    let row = local_media(state, server_name, media_id).await?;
    if row.uploader.as_deref() != Some(authed.user_id.as_str()) {
        return Err(Error::forbidden("This media ID was created by another user"));
    }
    if row.size.is_some() {
        return Err(cannot_overwrite());
    }
    if row.unused_expires_ts.is_some_and(|expires| expires <= state.now_ms()) {
        return Err(Error::not_found("This media ID has expired"));
    }
    let received = receive(state, &meta, body).await?;
    let origin = state.server_name.as_str();
    // Kept beside the final key until the database says this upload won.
    let staging_id = format!("{media_id}_staging_{}", new_media_id());
    store_received(state, origin, &staging_id, &received).await?;
    let won = state.storage.complete_reserved_media(origin, media_id, &received.content(&meta)).await;
    if !matches!(won, Ok(true)) {
        let _ = state.media.store.delete(&media_key(origin, &staging_id)).await;
        return match won {
            Ok(_) => Err(cannot_overwrite()),
            Err(e) => Err(e.into()),
        };
    }
    move_staged(state, origin, &staging_id, media_id).await
}

fn cannot_overwrite() -> Error {
    Error::custom(StatusCode::CONFLICT, "M_CANNOT_OVERWRITE_MEDIA", "Media has already been uploaded")
}

/// A received upload waiting in the store's temporary directory.
struct Received {
    temp: PathBuf,
    size: i64,
    sha256: String,
}

impl Received {
    fn content<'a>(&'a self, meta: &UploadMeta<'a>) -> UploadedContent<'a> {
        UploadedContent {
            content_type: meta.content_type.filter(|t| !t.is_empty()).unwrap_or("application/octet-stream"),
            filename: meta.filename.filter(|f| !f.is_empty()),
            size: self.size,
            sha256: &self.sha256,
        }
    }
}

/// Streams the body to a temporary file, enforcing the size limit as bytes arrive.
async fn receive(state: &AppState, meta: &UploadMeta<'_>, body: axum::body::Body) -> Result<Received> {
    let limit = state.config.media.max_upload_bytes;
    let too_large = || Error::too_large(format!("Uploads are limited to {limit} bytes"));
    if meta.declared_length.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut sink = Sink::create(state, limit).await?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::bad_json(format!("upload interrupted: {e}")))?;
        if !sink.write(&chunk).await? {
            return Err(too_large());
        }
    }
    sink.finish().await
}

/// A temporary file being filled, hashed and bounded as it is written; removed unless finished.
struct Sink {
    temp: PathBuf,
    /// Plain, or sealing as it writes when encryption at rest is on.
    file: Option<store::TempWriter>,
    hasher: Sha256,
    size: u64,
    limit: u64,
}

impl Sink {
    async fn create(state: &AppState, limit: u64) -> Result<Self> {
        let temp = state.media.store.temp_dir().join(format!("upload-{}", new_media_id()));
        let file = state.media.store.create_temp(&temp).await.map_err(io_error)?;
        Ok(Self { temp, file: Some(file), hasher: Sha256::new(), size: 0, limit })
    }

    /// Appends a chunk; false (writing nothing) when it would pass the limit.
    async fn write(&mut self, chunk: &[u8]) -> Result<bool> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Ok(false);
        }
        self.hasher.update(chunk);
        let file = self.file.as_mut().ok_or_else(|| Error::internal("media sink already finished"))?;
        file.write_all(chunk).await.map_err(io_error)?;
        Ok(true)
    }

    async fn finish(mut self) -> Result<Received> {
        let mut file = self.file.take().ok_or_else(|| Error::internal("media sink already finished"))?;
        file.shutdown().await.map_err(io_error)?;
        let sha256 = std::mem::take(&mut self.hasher).finalize().iter().map(|b| format!("{b:02x}")).collect();
        let size = i64::try_from(self.size).unwrap_or(i64::MAX);
        // From here the caller owns the file.
        let temp = std::mem::take(&mut self.temp);
        Ok(Received { temp, size, sha256 })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

async fn store_received(state: &AppState, origin: &str, media_id: &str, received: &Received) -> Result<()> {
    let result = state.media.store.put_file(&media_key(origin, media_id), &received.temp).await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&received.temp).await;
    }
    result.map_err(io_error)
}

/// Moves staged content to its media ID.
async fn move_staged(state: &AppState, origin: &str, staging_id: &str, media_id: &str) -> Result<()> {
    let (from, to) = (media_key(origin, staging_id), media_key(origin, media_id));
    state.media.store.rename(&from, &to).await.map_err(io_error)
}

fn io_error(e: std::io::Error) -> Error {
    Error::internal(format!("media store: {e}"))
}

/// A media item's row once it has content: a local one waiting up to `wait` for a reserved
/// upload, a remote one fetched unless `legacy` (unauthenticated requests only see the cache, so
/// they cannot make us fetch).
async fn uploaded_media(
    state: &AppState,
    server_name: &str,
    media_id: &str,
    wait: Option<Duration>,
    legacy: bool,
) -> Result<MediaRow> {
    let wait = wait.unwrap_or(DEFAULT_WAIT).min(MAX_WAIT);
    if server_name != state.server_name.as_str() {
        return remote::media(state, server_name, media_id, wait, !legacy).await;
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let row = local_media(state, server_name, media_id).await?;
        if row.quarantined_by.is_some() {
            // As Synapse does: quarantined media is simply not there for clients.
            return Err(Error::not_found("Media not found"));
        }
        if row.size.is_some() {
            return Ok(row);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::custom(
                StatusCode::GATEWAY_TIMEOUT,
                "M_NOT_YET_UPLOADED",
                "Media has not been uploaded yet",
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A media item of this server.
async fn local_media(state: &AppState, server_name: &str, media_id: &str) -> Result<MediaRow> {
    let not_found = || Error::not_found("Media not found");
    if server_name != state.server_name.as_str() {
        return Err(not_found());
    }
    if !is_valid_media_id(media_id) {
        return Err(not_found());
    }
    state.storage.media(server_name, media_id).await?.ok_or_else(not_found)
}

/// The content of a media item. `legacy` requests (unauthenticated endpoints) only see media
/// older than the configured cut-off.
pub async fn download(
    state: &AppState,
    server_name: &str,
    media_id: &str,
    wait: Option<Duration>,
    legacy: bool,
) -> Result<Download> {
    let row = uploaded_media(state, server_name, media_id, wait, legacy).await?;
    check_legacy_access(state, &row, legacy)?;
    let reader = state.media.store.open(&media_key(&row.origin, &row.media_id)).await.map_err(io_error)?;
    let reader = reader.ok_or_else(|| Error::not_found("Media content is missing"))?;
    Ok(Download { content_type: row.content_type, filename: row.filename, size: row.size.unwrap_or(0), reader })
}

fn check_legacy_access(state: &AppState, row: &MediaRow, legacy: bool) -> Result<()> {
    if legacy && row.created_ts >= state.config.media.legacy_unauthenticated_before_ts {
        return Err(Error::not_found("Use the authenticated media endpoints (/_matrix/client/v1/media)"));
    }
    Ok(())
}

/// A thumbnail request.
pub struct ThumbnailRequest {
    pub width: u32,
    pub height: u32,
    pub method: Method,
    pub wait: Option<Duration>,
    pub legacy: bool,
}

pub async fn thumbnail(
    state: &AppState,
    server_name: &str,
    media_id: &str,
    request: ThumbnailRequest,
) -> Result<Download> {
    if request.width == 0 || request.height == 0 {
        return Err(Error::invalid_param("width and height must be positive"));
    }
    let (width, height, method) = thumbnail::choose(request.width, request.height, request.method);
    // Remote media fetched whole gets its thumbnails made here; otherwise the origin's are used.
    if server_name != state.server_name.as_str() && !remote::is_cached(state, server_name, media_id).await? {
        let wait = request.wait.unwrap_or(DEFAULT_WAIT).min(MAX_WAIT);
        return remote::thumbnail(state, server_name, media_id, (width, height, method), wait, !request.legacy).await;
    }
    let row = uploaded_media(state, server_name, media_id, request.wait, request.legacy).await?;
    check_legacy_access(state, &row, request.legacy)?;
    if !thumbnail::is_thumbnailable(&row.content_type) {
        return Err(Error::not_found("No thumbnails for this media type"));
    }
    let (w, h) = (i64::from(width), i64::from(height));
    let cached = state.storage.thumbnail(&row.origin, &row.media_id, w, h, method.as_str()).await?;
    let thumbnail = match cached {
        Some(cached) => cached,
        None => make_thumbnail(state, &row, (width, height, method)).await?,
    };
    let key = thumbnail_key(&row.origin, &row.media_id, w, h, method.as_str());
    let reader = state.media.store.open(&key).await.map_err(io_error)?;
    let reader = reader.ok_or_else(|| Error::not_found("Thumbnail content is missing"))?;
    Ok(Download { content_type: thumbnail.content_type, filename: None, size: thumbnail.size, reader })
}

async fn make_thumbnail(state: &AppState, row: &MediaRow, size: (u32, u32, Method)) -> Result<ThumbnailRow> {
    let _permit = state.media.thumbnail_permits.acquire().await.map_err(|e| Error::internal(e.to_string()))?;
    let bytes = read_all(state, &media_key(&row.origin, &row.media_id)).await?;
    let content_type = row.content_type.clone();
    let max_pixels = state.config.media.max_thumbnail_pixels;
    let made = tokio::task::spawn_blocking(move || thumbnail::make(&bytes, &content_type, size, max_pixels))
        .await
        .map_err(|e| Error::internal(format!("thumbnailer: {e}")))?;
    let made = match made {
        Ok(made) => made,
        Err(ThumbnailError::TooLarge { width, height }) => {
            return Err(Error::too_large(format!("The image ({width}x{height}) is too large to thumbnail")));
        }
        Err(ThumbnailError::Undecodable(_) | ThumbnailError::Unsupported) => {
            return Err(Error::not_found("No thumbnail can be made of this media"));
        }
    };
    let (width, height, method) = size;
    let row_out = ThumbnailRow {
        width: i64::from(width),
        height: i64::from(height),
        method: method.as_str().to_owned(),
        content_type: made.content_type.to_owned(),
        size: i64::try_from(made.bytes.len()).unwrap_or(i64::MAX),
    };
    let key = thumbnail_key(&row.origin, &row.media_id, row_out.width, row_out.height, method.as_str());
    state.media.store.put_bytes(&key, made.bytes).await.map_err(io_error)?;
    state.storage.insert_thumbnail(&row.origin, &row.media_id, &row_out).await?;
    Ok(row_out)
}

async fn read_all(state: &AppState, key: &str) -> Result<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let reader = state.media.store.open(key).await.map_err(io_error)?;
    let mut reader = reader.ok_or_else(|| Error::not_found("Media content is missing"))?;
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).await.map_err(io_error)?;
    Ok(bytes)
}

/// Deletes a local media item: its metadata, its content and its thumbnails.
pub async fn delete(state: &AppState, media_id: &str) -> Result<bool> {
    let origin = state.server_name.as_str();
    if !is_valid_media_id(media_id) || !state.storage.delete_media(origin, media_id).await? {
        return Ok(false);
    }
    state.media.store.delete(&media_key(origin, media_id)).await.map_err(io_error)?;
    Ok(true)
}
