//! Loads the server's signing key from disk, generating it on first start.

use std::io::Write as _;
use std::path::Path;

use federation::ServerSigningKey;

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("cannot read the signing key {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the signing key {path} is invalid: {source}")]
    Invalid { path: String, source: federation::KeyFileError },
    #[error("cannot write a new signing key to {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Reads the key at `path`, or creates a new one there (readable by the owner only).
/// Returns the key and whether it was generated now.
pub fn load_or_generate(path: &Path) -> Result<(ServerSigningKey, bool), SigningKeyError> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = ServerSigningKey::parse_key_file(&text)
                .map_err(|source| SigningKeyError::Invalid { path: shown, source })?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = ServerSigningKey::generate();
            write_private(path, key.to_key_file().as_bytes())
                .map_err(|source| SigningKeyError::Write { path: shown, source })?;
            Ok((key, true))
        }
        Err(source) => Err(SigningKeyError::Read { path: shown, source }),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reloads_the_same_key() {
        let dir = std::env::temp_dir().join(format!("myelin-key-{}", std::process::id()));
        let path = dir.join("nested").join("signing.key");
        let _ = std::fs::remove_dir_all(&dir);
        let (first, created) = load_or_generate(&path).unwrap();
        assert!(created);
        let (second, created_again) = load_or_generate(&path).unwrap();
        assert!(!created_again);
        assert_eq!(first.public_key_base64(), second.public_key_base64());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(load_or_generate(&path), Err(SigningKeyError::Invalid { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
