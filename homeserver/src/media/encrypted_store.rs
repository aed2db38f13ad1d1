//! A [`MediaStore`] that seals everything it stores (encryption at rest) before handing it to
//! the store underneath, and opens it again while it streams back.

use std::io;
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt as _;

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::store::{BoxFuture, MediaStore, Reader, TempWriter};
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
            // Sealed by `create_temp` under the temporary file's identity: resealed under the key's
            // while streaming, so the plaintext never touches the disk.
            let stored = tokio::fs::File::open(temp).await?;
            let plain = media::decrypt(self.keys.clone(), temp_identity(temp), stored).await?;
            let plain = tokio_util::io::StreamReader::new(plain);
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

    fn create_temp<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, io::Result<TempWriter>> {
        Box::pin(async move {
            let file = tokio::fs::File::create(path).await?;
            let (pipe, plain) = tokio::io::duplex(media::CHUNK);
            let (keys, identity) = (self.keys.clone(), temp_identity(path));
            let task = tokio::spawn(async move {
                let mut file = file;
                media::encrypt(&keys, &identity, plain, &mut file).await?;
                file.sync_all().await
            });
            Ok(Box::pin(SealingWriter { pipe, task: Some(task) }) as TempWriter)
        })
    }
}

/// The associated-data identity of an upload's temporary file.
fn temp_identity(path: &Path) -> String {
    format!("upload-temp/{}", path.file_name().unwrap_or_default().to_string_lossy())
}

/// Writes into a pipe that a task seals into the temporary file; shutting down waits for the
/// task, so the file is complete (and synced) when `shutdown` returns.
struct SealingWriter {
    pipe: tokio::io::DuplexStream,
    task: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl tokio::io::AsyncWrite for SealingWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(Pin::new(&mut self.pipe).poll_shutdown(cx))?;
        let Some(task) = self.task.as_mut() else { return Poll::Ready(Ok(())) };
        let finished = std::task::ready!(Pin::new(task).poll(cx));
        self.task = None;
        Poll::Ready(finished.unwrap_or_else(|e| Err(io::Error::other(e))))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::super::store::{LocalFileStore, media_key};
    use super::*;
    use crate::at_rest::{Key, generate_key_text};

    fn contains_marker(bytes: &[u8]) -> bool {
        bytes.windows(6).any(|w| w == b"MARKER")
    }

    #[tokio::test]
    async fn stores_sealed_and_reads_back_plain() {
        let root = std::env::temp_dir().join(format!("myelin-sealed-{}", crate::accounts::tokens::new_opaque_id(8)));
        let keys = Arc::new(Keyring::new(Key::from_base64(&generate_key_text(), "test").unwrap(), vec![]));
        let store = EncryptedStore::new(Box::new(LocalFileStore::new(root.clone()).unwrap()), keys);
        let (key, moved) = (media_key("example.org", "AbCdEf"), media_key("example.org", "GhIjKl"));
        let plain = b"MARKER-plain-media".repeat(10_000);
        let temp = store.temp_dir().join("upload");
        let mut writer = store.create_temp(&temp).await.unwrap();
        writer.write_all(&plain).await.unwrap();
        writer.shutdown().await.unwrap();
        assert!(!contains_marker(&std::fs::read(&temp).unwrap()), "the upload is sealed as it arrives");
        store.put_file(&key, &temp).await.unwrap();
        assert!(!temp.exists(), "the plaintext upload is removed");
        store.rename(&key, &moved).await.unwrap();
        assert!(store.open(&key).await.unwrap().is_none());
        let mut read = Vec::new();
        store.open(&moved).await.unwrap().unwrap().read_to_end(&mut read).await.unwrap();
        assert_eq!(read, plain);
        let on_disk = std::fs::read(root.join("content").join(&moved)).unwrap();
        assert!(!contains_marker(&on_disk));
        let _ = std::fs::remove_dir_all(root);
    }
}
