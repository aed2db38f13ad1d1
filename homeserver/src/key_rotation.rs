//! `myelin rotate-key`: seals every record and media file under a new key, in bounded batches,
//! while the server may keep running (see README, "Encryption at rest", for the procedure).

use std::sync::Arc;

use crate::at_rest::{Key, Keyring, keyring_from_config};
use crate::config::Config;
use crate::media::encrypted_store::EncryptedStore;
use crate::media::store::{LocalFileStore, media_key, thumbnail_key};
use crate::storage::Codec;

/// What a rotation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotated {
    pub records: u64,
    pub media_files: u64,
}

/// Reseals everything under `new_key`; the configured keys (current and older) open what is there.
pub async fn rotate(config: &Config, new_key: Key, batch: i64) -> Result<Rotated, String> {
    let configured = keyring_from_config(&config.storage)
        .map_err(|e| e.to_string())?
        .ok_or("encryption at rest is off (storage.encryption = false): there is no key to rotate")?;
    let keys = Arc::new(configured.rotated_to(new_key));
    let storage =
        crate::server::open_storage_with(config, Codec::encrypted(keys.clone())).await.map_err(|e| e.to_string())?;
    let result = async {
        let records = storage.reseal_records(batch).await.map_err(|e| e.to_string())?;
        let media_files = reseal_media(config, &storage, keys, batch).await?;
        Ok(Rotated { records, media_files })
    }
    .await;
    storage.close().await;
    result
}

async fn reseal_media(
    config: &Config,
    storage: &crate::storage::Storage,
    keys: Arc<Keyring>,
    batch: i64,
) -> Result<u64, String> {
    let media_path = config.effective_media_path();
    let local = LocalFileStore::beside_running_server(media_path).map_err(|e| format!("media store: {e}"))?;
    let store = EncryptedStore::new(Box::new(local), keys);
    let reseal = |key: String| {
        let store = &store;
        async move { store.reseal(&key).await.map_err(|e| format!("media {key}: {e}")) }
    };
    let mut resealed = 0;
    let mut offset = 0;
    loop {
        let page = storage.media_page(batch, offset).await.map_err(|e| e.to_string())?;
        for (origin, media_id) in &page {
            resealed += u64::from(reseal(media_key(origin, media_id)).await?);
        }
        if i64::try_from(page.len()).unwrap_or(i64::MAX) < batch {
            break;
        }
        offset += batch;
    }
    offset = 0;
    loop {
        let page = storage.thumbnail_page(batch, offset).await.map_err(|e| e.to_string())?;
        for (origin, media_id, width, height, method) in &page {
            resealed += u64::from(reseal(thumbnail_key(origin, media_id, *width, *height, method)).await?);
        }
        if i64::try_from(page.len()).unwrap_or(i64::MAX) < batch {
            break;
        }
        offset += batch;
    }
    Ok(resealed)
}
