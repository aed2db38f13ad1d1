//! URL previews: the OpenGraph data of a page, its image stored as our own media so clients
//! show it through the media repository. Fetched through [`crate::safe_http`] (no non-public
//! addresses), with bounded size and time, and kept for a while per URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::{Sink, mxc, new_media_id, store_received};
use crate::accounts::Authed;
use crate::error::{Error, Result};
use crate::safe_http::FetchError;
use crate::state::AppState;
use crate::storage::UploadedContent;

/// The longest URL previewed (each is a cache key).
const MAX_URL_BYTES: usize = 4096;
/// How much of a page is read; OpenGraph tags are in the head.
const MAX_PAGE_BYTES: u64 = 1024 * 1024;
/// The largest image stored for a preview.
const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;
/// How long fetching a page (or its image) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a preview is reused, and how many are kept.
const CACHE_TTL: Duration = Duration::from_secs(3600);
const CACHE_ENTRIES: usize = 1000;

/// Recent previews by URL.
#[derive(Default)]
pub struct PreviewCache(Mutex<HashMap<String, (Instant, Arc<Value>)>>);

impl PreviewCache {
    fn get(&self, url: &str) -> Option<Arc<Value>> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(url).filter(|(at, _)| at.elapsed() < CACHE_TTL).map(|(_, preview)| preview.clone())
    }

    fn put(&self, url: &str, preview: Arc<Value>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_ENTRIES {
            map.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        }
        if map.len() >= CACHE_ENTRIES
            && let Some(oldest) = map.iter().min_by_key(|(_, (at, _))| *at).map(|(url, _)| url.clone())
        {
            map.remove(&oldest);
        }
        map.insert(url.to_owned(), (Instant::now(), preview));
    }
}

pub async fn preview(state: &AppState, authed: &Authed, url: &str) -> Result<Arc<Value>> {
    if !state.config.media.url_previews {
        return Err(Error::unrecognized(StatusCode::NOT_FOUND, "URL previews are disabled on this server"));
    }
    if url.len() > MAX_URL_BYTES {
        return Err(Error::invalid_param("The URL is too long"));
    }
    if let Some(cached) = state.media.previews.get(url) {
        return Ok(cached);
    }
    // A link posted in a busy room is asked for by every client at once: fetch (and store its
    // image) once.
    let _turn = state.media.preview_fetches.turn(url.to_owned()).await;
    if let Some(cached) = state.media.previews.get(url) {
        return Ok(cached);
    }
    let response = state.media.fetcher.get(url, FETCH_TIMEOUT).await.map_err(fetch_error)?;
    if !response.status().is_success() {
        return Err(Error::custom(
            StatusCode::BAD_GATEWAY,
            "M_UNKNOWN",
            format!("The page answered {}", response.status().as_u16()),
        ));
    }
    let page_url = response.url().clone();
    let content_type = content_type_of(&response);
    let mut preview = Map::new();
    if content_type.starts_with("image/") {
        let image = store_image(state, authed, response, &content_type).await?;
        preview.extend(image);
    } else if content_type == "text/html" || content_type == "application/xhtml+xml" {
        let body = read_bounded(response, MAX_PAGE_BYTES).await?;
        let mut og = super::opengraph::parse(&String::from_utf8_lossy(&body));
        // The image is described by what we store, not by what the page claims.
        let image_url = og.remove("og:image");
        og.retain(|key, _| !key.starts_with("og:image:"));
        preview.extend(og.into_iter().map(|(key, value)| (key, Value::String(value))));
        if let Some(image_url) = image_url.and_then(|u| page_url.join(&u).ok()) {
            // A preview without its image is still a preview.
            match fetch_image(state, authed, image_url.as_str()).await {
                Ok(image) => preview.extend(image),
                Err(e) => tracing::debug!(error = %e, "preview image not fetched"),
            }
        }
    }
    let preview = Arc::new(Value::Object(preview));
    state.media.previews.put(url, preview.clone());
    Ok(preview)
}

fn content_type_of(response: &reqwest::Response) -> String {
    let header = response.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    header.unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// The body up to `limit` bytes; the rest is not read.
async fn read_bounded(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    let read = async {
        while let Some(chunk) = next_chunk(&mut response).await? {
            let room = usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() as u64 >= limit {
                break;
            }
        }
        Ok::<_, Error>(())
    };
    tokio::time::timeout(FETCH_TIMEOUT, read).await.map_err(|_| fetch_error(FetchError::Timeout))??;
    Ok(body)
}

async fn fetch_image(state: &AppState, authed: &Authed, url: &str) -> Result<Map<String, Value>> {
    let response = state.media.fetcher.get(url, FETCH_TIMEOUT).await.map_err(fetch_error)?;
    let content_type = content_type_of(&response);
    if !response.status().is_success() || !content_type.starts_with("image/") {
        return Err(Error::not_found("The preview image is not an image"));
    }
    store_image(state, authed, response, &content_type).await
}

/// Stores an image as the requester's media, as Synapse does, and describes it.
async fn store_image(
    state: &AppState,
    authed: &Authed,
    mut response: reqwest::Response,
    content_type: &str,
) -> Result<Map<String, Value>> {
    let limit = MAX_IMAGE_BYTES.min(state.config.media.max_upload_bytes);
    let mut sink = Sink::create(state, limit).await?;
    let read = async {
        while let Some(chunk) = next_chunk(&mut response).await? {
            if !sink.write(&chunk).await? {
                return Err(Error::too_large("The preview image is too large"));
            }
        }
        Ok(())
    };
    tokio::time::timeout(FETCH_TIMEOUT, read).await.map_err(|_| fetch_error(FetchError::Timeout))??;
    let received = sink.finish().await?;
    let dimensions = image_dimensions(received.temp.clone()).await;
    let media_id = new_media_id();
    let origin = state.server_name.as_str();
    store_received(state, origin, &media_id, &received).await?;
    let content = UploadedContent { content_type, filename: None, size: received.size, sha256: &received.sha256 };
    state.storage.insert_media(origin, &media_id, authed.user_id.as_str(), &content, state.now_ms()).await?;
    let mut image = Map::new();
    image.insert("og:image".into(), json!(mxc(state, &media_id)));
    image.insert("og:image:type".into(), json!(content_type));
    image.insert("matrix:image:size".into(), json!(received.size));
    if let Some((width, height)) = dimensions {
        image.insert("og:image:width".into(), json!(width));
        image.insert("og:image:height".into(), json!(height));
    }
    Ok(image)
}

/// The size an image's header claims, read from the file without decoding it.
async fn image_dimensions(path: std::path::PathBuf) -> Option<(u32, u32)> {
    let read = move || image::ImageReader::open(path).ok()?.with_guessed_format().ok()?.into_dimensions().ok();
    tokio::task::spawn_blocking(read).await.ok().flatten()
}

async fn next_chunk(response: &mut reqwest::Response) -> Result<Option<bytes::Bytes>> {
    response.chunk().await.map_err(|_| Error::custom(StatusCode::BAD_GATEWAY, "M_UNKNOWN", "The response broke off"))
}

fn fetch_error(e: FetchError) -> Error {
    match e {
        FetchError::BadUrl => Error::invalid_param("Only http and https URLs can be previewed"),
        FetchError::Refused => Error::forbidden("This URL refers to an address that may not be previewed"),
        FetchError::Timeout => {
            Error::custom(StatusCode::GATEWAY_TIMEOUT, "M_UNKNOWN", "The page did not answer in time")
        }
        FetchError::TooManyRedirects | FetchError::Failed(_) => {
            Error::custom(StatusCode::BAD_GATEWAY, "M_UNKNOWN", "The page could not be fetched")
        }
    }
}
