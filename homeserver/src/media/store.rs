//! Where media bytes live. [`LocalFileStore`] keeps them under a directory; an S3-compatible
//! store would be another implementation of [`MediaStore`], not a change to its callers.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
/// Where an upload in progress is written; `shutdown` completes it.
pub type TempWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// Content addressed by a key made of safe path segments (see [`media_key`]).
pub trait MediaStore: Send + Sync {
    /// Moves a complete temporary file (from [`MediaStore::temp_dir`]) into place under `key`.
    fn put_file<'a>(&'a self, key: &'a str, temp: &'a Path) -> BoxFuture<'a, io::Result<()>>;
    fn put_bytes<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, io::Result<()>>;
    /// The content for streaming; `None` when nothing is stored under `key`.
    fn open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Option<Reader>>>;
    /// Moves content from one key to another (replacing what was there).
    fn rename<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, io::Result<()>>;
    /// Removes the content under `key` and everything derived from it (thumbnails).
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>>;
    /// A local directory for uploads in progress.
    fn temp_dir(&self) -> &Path;
    /// Creates a temporary file (in [`MediaStore::temp_dir`]) for an upload in progress, for
    /// [`MediaStore::put_file`] once complete. A store may transform what is written (seal it).
    fn create_temp<'a>(&'a self, path: &'a Path) -> BoxFuture<'a, io::Result<TempWriter>> {
        Box::pin(async move { Ok(Box::pin(tokio::fs::File::create(path).await?) as TempWriter) })
    }
}

/// The store key of a media item. Both parts are checked to be safe path segments first.
pub fn media_key(origin: &str, media_id: &str) -> String {
    format!("{origin}/{}/{}/{media_id}", &media_id[..2], &media_id[2..4])
}

/// The store key of one of a media item's thumbnails.
pub fn thumbnail_key(origin: &str, media_id: &str, width: i64, height: i64, method: &str) -> String {
    format!("{}.thumbnails/{width}x{height}-{method}", media_key(origin, media_id))
}

/// The store key of a thumbnail fetched from a remote item's origin (beside the ones made here,
/// so deleting the item removes it too).
pub fn remote_thumbnail_key(origin: &str, media_id: &str, width: i64, height: i64, method: &str) -> String {
    format!("{}.thumbnails/origin-{width}x{height}-{method}", media_key(origin, media_id))
}

/// Media IDs are ours to choose and checked on the way in, so keys never escape the store.
pub fn is_valid_media_id(media_id: &str) -> bool {
    media_id.len() >= 4
        && media_id.len() <= 255
        && media_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub struct LocalFileStore {
    root: PathBuf,
    temp: PathBuf,
}

impl LocalFileStore {
    pub fn new(root: PathBuf) -> io::Result<Self> {
        let temp = root.join("tmp");
        std::fs::create_dir_all(&temp)?;
        // Leftovers of uploads interrupted by a crash.
        for entry in std::fs::read_dir(&temp)?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(Self { root: root.join("content"), temp })
    }

    /// The same store, for a tool running beside the server: leaves the temporary directory alone
    /// (its files may be uploads in progress).
    pub fn beside_running_server(root: PathBuf) -> io::Result<Self> {
        let temp = root.join("tmp");
        std::fs::create_dir_all(&temp)?;
        Ok(Self { root: root.join("content"), temp })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

impl MediaStore for LocalFileStore {
    fn put_file<'a>(&'a self, key: &'a str, temp: &'a Path) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let path = self.path(key);
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            // Durable before it is visible under its key.
            tokio::fs::File::open(temp).await?.sync_all().await?;
            tokio::fs::rename(temp, path).await
        })
    }

    fn put_bytes<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            // Written beside the store and renamed, so a reader never sees half a file.
            let temp = self.temp.join(format!("put-{}", crate::accounts::tokens::new_opaque_id(16)));
            tokio::fs::write(&temp, bytes).await?;
            let result = self.put_file(key, &temp).await;
            if result.is_err() {
                let _ = tokio::fs::remove_file(&temp).await;
            }
            result
        })
    }

    fn open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Option<Reader>>> {
        Box::pin(async move {
            match tokio::fs::File::open(self.path(key)).await {
                Ok(file) => Ok(Some(Box::pin(file) as Reader)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn rename<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let to = self.path(to);
            if let Some(parent) = to.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::rename(self.path(from), to).await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let path = self.path(key);
            ignore_missing(tokio::fs::remove_file(&path).await)?;
            let mut thumbnails = path.into_os_string();
            thumbnails.push(".thumbnails");
            ignore_missing(tokio::fs::remove_dir_all(PathBuf::from(thumbnails)).await)
        })
    }

    fn temp_dir(&self) -> &Path {
        &self.temp
    }
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[test]
    fn media_ids_cannot_escape_the_store() {
        assert!(is_valid_media_id("AbCd_123-xyz"));
        for bad in ["../../etc", "a/bcd", "ab", "", "abc.d", "abcd\0"] {
            assert!(!is_valid_media_id(bad), "{bad:?}");
        }
        assert_eq!(media_key("example.org", "AbCdEf"), "example.org/Ab/Cd/AbCdEf");
    }

    #[tokio::test]
    async fn stores_reads_and_deletes_with_thumbnails() {
        let root = std::env::temp_dir().join(format!("myelin-store-{}", crate::accounts::tokens::new_opaque_id(8)));
        let store = LocalFileStore::new(root.clone()).unwrap();
        let key = media_key("example.org", "AbCdEf");
        store.put_bytes(&key, b"hello".to_vec()).await.unwrap();
        let thumb = thumbnail_key("example.org", "AbCdEf", 32, 32, "crop");
        store.put_bytes(&thumb, b"small".to_vec()).await.unwrap();
        let mut text = String::new();
        store.open(&key).await.unwrap().unwrap().read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello");
        store.delete(&key).await.unwrap();
        assert!(store.open(&key).await.unwrap().is_none());
        assert!(store.open(&thumb).await.unwrap().is_none(), "thumbnails go with their media");
        store.delete(&key).await.unwrap();
        let _ = std::fs::remove_dir_all(root);
    }
}
