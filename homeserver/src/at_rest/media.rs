//! Media files sealed in chunks, so a file of any size is encrypted and decrypted while it
//! streams and never sits in memory whole.
//!
//! File: `MAGIC ‖ key id ‖ chunk…`; chunk: `nonce ‖ ciphertext ‖ tag` of [`CHUNK`] plaintext bytes,
//! except the last, which is shorter (possibly empty) and so marks the end. Each chunk's
//! associated data binds the file header, its index, whether it is the last, and the store key
//! (the media's identity): chunks cannot be reordered, dropped, truncated or moved to another file.

use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::stream::{self, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{KeyId, Keyring, NONCE_LEN, TAG_LEN};

/// Starts with a zero byte so it is unlikely to begin any plain file we stored before.
pub const MAGIC: &[u8; 8] = b"\0MYELIN\x01";
const HEADER: usize = MAGIC.len() + 4;
pub const CHUNK: usize = 64 * 1024;
const SEALED_CHUNK: usize = NONCE_LEN + CHUNK + TAG_LEN;

/// Encrypts everything `plain` yields into `out`, under the keyring's current key.
pub async fn encrypt<R, W>(keys: &Keyring, store_key: &str, mut plain: R, mut out: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let key = keys.current();
    let header = header(key.id());
    out.write_all(&header).await?;
    let mut buffer = vec![0u8; CHUNK];
    let mut index = 0u64;
    loop {
        let filled = read_up_to(&mut plain, &mut buffer).await?;
        let last = filled < CHUNK;
        out.write_all(&key.seal(&aad(&header, index, last, store_key), &buffer[..filled])).await?;
        if last {
            break;
        }
        index += 1;
    }
    out.flush().await
}

/// Encrypts bytes already in memory (thumbnails).
pub async fn encrypt_bytes(keys: &Keyring, store_key: &str, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plain.len() + HEADER + (plain.len() / CHUNK + 1) * (NONCE_LEN + TAG_LEN));
    encrypt(keys, store_key, plain, &mut out).await.expect("writing to memory cannot fail");
    out
}

pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// The plaintext of a stored file, decrypted chunk by chunk as it is read. A file without our
/// header is legacy plain content and is passed through. A damaged file yields an error where
/// the damage is found, never garbage.
pub async fn decrypt<R>(keys: std::sync::Arc<Keyring>, store_key: String, mut stored: R) -> io::Result<ByteStream>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let mut header = [0u8; HEADER];
    let filled = read_up_to(&mut stored, &mut header).await?;
    if filled < MAGIC.len() || &header[..MAGIC.len()] != MAGIC {
        let start = Bytes::copy_from_slice(&header[..filled]);
        let rest = tokio_util::io::ReaderStream::new(stored);
        return Ok(Box::pin(futures_util::StreamExt::chain(stream::once(async { Ok(start) }), rest)));
    }
    if filled < HEADER {
        return Err(damaged(&store_key, "truncated header"));
    }
    let key_id: KeyId = header[MAGIC.len()..].try_into().expect("four bytes");
    if keys.by_id(key_id).is_none() {
        return Err(damaged(&store_key, &format!("sealed with unknown key {}", super::hex(&key_id))));
    }
    let state = (stored, keys, store_key, header, 0u64, false);
    Ok(Box::pin(stream::try_unfold(state, |(mut stored, keys, store_key, header, index, done)| async move {
        if done {
            // Anything after the last chunk was appended by someone else.
            let mut probe = [0u8; 1];
            if stored.read(&mut probe).await? != 0 {
                return Err(damaged(&store_key, "data after the last chunk"));
            }
            return Ok(None);
        }
        let mut sealed = vec![0u8; SEALED_CHUNK];
        let filled = read_up_to(&mut stored, &mut sealed).await?;
        let last = filled < SEALED_CHUNK;
        let key_id: KeyId = header[MAGIC.len()..].try_into().expect("four bytes");
        let key = keys.by_id(key_id).expect("checked above");
        let plain = key
            .open(&aad(&header, index, last, &store_key), &sealed[..filled])
            .ok_or_else(|| damaged(&store_key, &format!("chunk {index} fails authentication")))?;
        Ok(Some((Bytes::from(plain), (stored, keys, store_key, header, index + 1, last))))
    })))
}

/// The key a stored file is sealed with; `None` for a legacy plain file.
pub async fn sealed_key_id<R: AsyncRead + Unpin>(mut stored: R) -> io::Result<Option<KeyId>> {
    let mut header = [0u8; HEADER];
    let filled = read_up_to(&mut stored, &mut header).await?;
    if filled < HEADER || &header[..MAGIC.len()] != MAGIC {
        return Ok(None);
    }
    Ok(header[MAGIC.len()..].try_into().ok())
}

fn header(key_id: KeyId) -> [u8; HEADER] {
    let mut header = [0u8; HEADER];
    header[..MAGIC.len()].copy_from_slice(MAGIC);
    header[MAGIC.len()..].copy_from_slice(&key_id);
    header
}

fn aad(header: &[u8; HEADER], index: u64, last: bool, store_key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER + 9 + store_key.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(&index.to_be_bytes());
    aad.push(u8::from(last));
    aad.extend_from_slice(store_key.as_bytes());
    aad
}

fn damaged(store_key: &str, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("encrypted media {store_key} is damaged: {what}"))
}

/// Fills `buffer` unless the reader ends first; returns how much was read.
async fn read_up_to<R: AsyncRead + Unpin>(reader: &mut R, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_util::TryStreamExt as _;

    use super::super::{Key, generate_key_text};
    use super::*;

    fn keyring() -> Arc<Keyring> {
        Arc::new(Keyring::new(Key::from_base64(&generate_key_text(), "test").unwrap(), vec![]))
    }

    async fn read(keys: &Arc<Keyring>, key: &str, stored: Vec<u8>) -> io::Result<Vec<u8>> {
        let chunks: Vec<Bytes> =
            decrypt(keys.clone(), key.to_owned(), io::Cursor::new(stored)).await?.try_collect().await?;
        Ok(chunks.concat())
    }

    #[tokio::test]
    async fn round_trips_every_size_boundary() {
        let keys = keyring();
        for size in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK] {
            let plain: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let sealed = encrypt_bytes(&keys, "a/b", &plain).await;
            assert!(sealed.starts_with(MAGIC));
            assert_eq!(read(&keys, "a/b", sealed).await.unwrap(), plain, "size {size}");
        }
    }

    #[tokio::test]
    async fn refuses_damage_truncation_and_other_identities() {
        let keys = keyring();
        let plain = vec![7u8; 2 * CHUNK + 10];
        let sealed = encrypt_bytes(&keys, "a/b", &plain).await;
        assert!(read(&keys, "a/c", sealed.clone()).await.is_err(), "bound to its identity");
        assert!(read(&keys, "a/b", sealed[..HEADER + SEALED_CHUNK].to_vec()).await.is_err(), "truncated");
        let mut flipped = sealed.clone();
        flipped[HEADER + 100] ^= 1;
        assert!(read(&keys, "a/b", flipped).await.is_err());
        let mut appended = sealed.clone();
        appended.push(0);
        assert!(read(&keys, "a/b", appended).await.is_err());
        assert!(read(&keyring(), "a/b", sealed).await.is_err(), "wrong key");
    }

    #[tokio::test]
    async fn passes_legacy_plain_files_through() {
        let keys = keyring();
        assert_eq!(read(&keys, "a/b", b"plain old file".to_vec()).await.unwrap(), b"plain old file");
        assert_eq!(read(&keys, "a/b", b"ab".to_vec()).await.unwrap(), b"ab");
    }
}
