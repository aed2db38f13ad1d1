//! A [`MediaStore`] that seals everything it stores (encryption at rest) before handing it to
//! the store underneath, and opens it again while it streams back.

use std::io;
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt as _;

use super::store::{BoxFuture, MediaStore, Reader};
use crate::at_rest::{Keyring, media};

pub struct EncryptedStore {
    inner: Box<dyn MediaStore>,
    keys: Arc<Keyring>,
}

impl EncryptedStore {
    pub fn new(inner: Box<dyn MediaStore>, keys: Arc<Keyring>) -> Self {
        Self { inner, keys }
    }

    /// Seals what `plain` yields into a new temporary file and stores that under `key`.
    async fn put_sealed(&self, key: &str, plain: impl tokio::io::AsyncRead + Unpin) -> io::Result<()> {
        let sealed = self.inner.temp_dir().join(format!("sealed-{}", crate::accounts::tokens::new_opaque_id(16)));
        let result = async {
            let mut file = tokio::fs::File::create(&sealed).await?;
            media::encrypt(&self.keys, key, plain, &mut file).await?;
            file.sync_all().await?;
            self.inner.put_file(key, &sealed).await
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&sealed).await;
        }
        result
    }
}

impl EncryptedStore {
    /// Seals the content under `key` again with the current key, unless it already is (key
    /// rotation; also seals legacy plain files). Returns whether it changed. The new file replaces
    /// the old by a rename, so a download already reading the old one finishes it.
    pub async fn reseal(&self, key: &str) -> io::Result<bool> {
        let Some(stored) = self.inner.open(key).await? else { return Ok(false) };
        if media::sealed_key_id(stored).await? == Some(self.keys.current().id()) {
            return Ok(false);
        }
        let Some(plain) = self.open(key).await? else { return Ok(false) };
        self.put_sealed(key, plain).await?;
        Ok(true)
    }
}

impl MediaStore for EncryptedStore {
    fn put_file<'a>(&'a self, key: &'a str, temp: &'a Path) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let plain = tokio::fs::File::open(temp).await?;
            let result = self.put_sealed(key, plain).await;
            // The plaintext upload is gone either way (the caller expects the file to be consumed).
            let _ = tokio::fs::remove_file(temp).await;
            result
        })
    }

    fn put_bytes<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let sealed = media::encrypt_bytes(&self.keys, key, &bytes).await;
            self.inner.put_bytes(key, sealed).await
        })
    }

    fn open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Option<Reader>>> {
        Box::pin(async move {
            let Some(stored) = self.inner.open(key).await? else { return Ok(None) };
            let mut plain = media::decrypt(self.keys.clone(), key.to_owned(), stored).await?;
            // The first chunk is checked before anything is answered, so a damaged or foreign file
            // is an error response rather than a broken download.
            let first = plain.next().await.transpose()?;
            let plain = futures_util::stream::iter(first.map(Ok)).chain(plain);
            Ok(Some(Box::pin(tokio_util::io::StreamReader::new(plain)) as Reader))
        })
    }

    fn rename<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            // The store key is part of every chunk's associated data: moving means resealing.
            let plain = self.open(from).await?.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            self.put_sealed(to, plain).await?;
            self.inner.delete(from).await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>> {
        self.inner.delete(key)
    }

    fn temp_dir(&self) -> &Path {
        self.inner.temp_dir()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::super::store::{LocalFileStore, media_key};
    use super::*;
    use crate::at_rest::{Key, generate_key_text};

    #[tokio::test]
    async fn stores_sealed_and_reads_back_plain() {
        let root = std::env::temp_dir().join(format!("myelin-sealed-{}", crate::accounts::tokens::new_opaque_id(8)));
        let keys = Arc::new(Keyring::new(Key::from_base64(&generate_key_text(), "test").unwrap(), vec![]));
        let store = EncryptedStore::new(Box::new(LocalFileStore::new(root.clone()).unwrap()), keys);
        let (key, moved) = (media_key("example.org", "AbCdEf"), media_key("example.org", "GhIjKl"));
        let plain = b"MARKER-plain-media".repeat(10_000);
        let temp = store.temp_dir().join("upload");
        std::fs::write(&temp, &plain).unwrap();
        store.put_file(&key, &temp).await.unwrap();
        assert!(!temp.exists(), "the plaintext upload is removed");
        store.rename(&key, &moved).await.unwrap();
        assert!(store.open(&key).await.unwrap().is_none());
        let mut read = Vec::new();
        store.open(&moved).await.unwrap().unwrap().read_to_end(&mut read).await.unwrap();
        assert_eq!(read, plain);
        let on_disk = std::fs::read(root.join("content").join(&moved)).unwrap();
        assert!(!on_disk.windows(6).any(|w| w == b"MARKER"));
        let _ = std::fs::remove_dir_all(root);
    }
}
