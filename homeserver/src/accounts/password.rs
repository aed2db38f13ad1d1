//! Password hashing with argon2id, off the async runtime (it is deliberately slow).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::{Error, Result};

/// Each argon2 run holds its memory cost and a core for tens of milliseconds; bounding how many
/// run at once bounds memory and keeps a burst of logins from starving everything else.
static HASHING_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

async fn hashing_slot() -> Result<tokio::sync::SemaphorePermit<'static>> {
    HASHING_SLOTS.acquire().await.map_err(|e| Error::internal(e.to_string()))
}

/// Argon2id with 7 MiB and 5 passes: one of OWASP's equally strong settings (with 19 MiB and 2
/// passes, the crate's default), chosen for the smaller resident memory. Stored hashes carry
/// their parameters, so hashes made with other settings still verify.
fn hasher() -> Result<Argon2<'static>> {
    let params = argon2::Params::new(7 * 1024, 5, 1, None).map_err(|e| Error::internal(e.to_string()))?;
    Ok(Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params))
}

pub async fn hash(password: String) -> Result<String> {
    let _slot = hashing_slot().await?;
    tokio::task::spawn_blocking(move || {
        let mut salt_bytes = [0u8; 16];
        getrandom::fill(&mut salt_bytes).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| Error::internal(e.to_string()))?;
        hasher()?
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
}

/// True when `password` matches the stored hash. A missing or unreadable hash never matches.
pub async fn verify(stored_hash: Option<String>, password: String) -> Result<bool> {
    let Some(stored_hash) = stored_hash else { return Ok(false) };
    let _slot = hashing_slot().await?;
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored_hash)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn hashes_verify_only_the_right_password() {
        let hash = super::hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{hash}");
        assert!(super::verify(Some(hash.clone()), "correct horse".into()).await.unwrap());
        assert!(!super::verify(Some(hash), "wrong".into()).await.unwrap());
        assert!(!super::verify(None, "anything".into()).await.unwrap());
        assert!(!super::verify(Some("not a hash".into()), "x".into()).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_made_with_the_earlier_parameters_still_verify() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        let old = argon2::Argon2::default().hash_password(b"correct horse", &salt).unwrap().to_string();
        assert!(old.contains("m=19456,t=2,p=1"), "{old}");
        assert!(super::verify(Some(old.clone()), "correct horse".into()).await.unwrap());
        assert!(!super::verify(Some(old), "wrong".into()).await.unwrap());
    }
}
