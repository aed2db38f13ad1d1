//! Password hashing with argon2id, off the async runtime (it is deliberately slow).

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

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
fn params() -> Result<Params> {
    Params::new(7 * 1024, 5, 1, None).map_err(internal)
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("password hashing failed: {e}"))
}

pub async fn hash(password: String) -> Result<String> {
    let _slot = hashing_slot().await?;
    tokio::task::spawn_blocking(move || {
        let mut salt_bytes = [0u8; 16];
        getrandom::fill(&mut salt_bytes).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
        let salt = SaltString::encode_b64(&salt_bytes).map_err(internal)?;
        let params = params()?;
        let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
        run_argon2(Algorithm::Argon2id, Version::V0x13, &params, password.as_bytes(), &salt_bytes, &mut output)?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(internal)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&output).map_err(internal)?),
        };
        Ok(hash.to_string())
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
}

/// True when `password` matches the stored hash. A missing or unreadable hash never matches.
pub async fn verify(stored_hash: Option<String>, password: String) -> Result<bool> {
    let Some(stored_hash) = stored_hash else { return Ok(false) };
    let _slot = hashing_slot().await?;
    tokio::task::spawn_blocking(move || stored_hash_matches(&stored_hash, password.as_bytes()).unwrap_or(false))
        .await
        .map_err(|e| Error::internal(e.to_string()))
}

/// Recomputes the stored hash's output with its own algorithm, version and parameters; `None`
/// when the hash cannot be read or computed.
fn stored_hash_matches(stored_hash: &str, password: &[u8]) -> Option<bool> {
    let parsed = PasswordHash::new(stored_hash).ok()?;
    let (salt, expected) = (parsed.salt?, parsed.hash?);
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = parsed.version.map(Version::try_from).transpose().ok()?.unwrap_or_default();
    let params = Params::try_from(&parsed).ok()?;
    let mut salt_buffer = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buffer).ok()?;
    let mut output = vec![0u8; expected.len()];
    run_argon2(algorithm, version, &params, password, salt_bytes, &mut output).ok()?;
    // `Output` compares in constant time.
    Some(Output::new(&output).ok()? == expected)
}

/// Argon2 over working memory of its own (see [`WorkingMemory`]).
fn run_argon2(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    output: &mut [u8],
) -> Result<()> {
    let mut memory = WorkingMemory::new(params.block_count())?;
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(password, salt, output, memory.blocks())
        .map_err(internal)
}

/// Argon2's working memory, mapped from the system for one hash and unmapped right after it.
/// From the allocator, each freed 7 MiB block stayed resident until it was reused or purged, and
/// a burst of registrations or logins left tens of MiB of resident memory behind.
struct WorkingMemory {
    start: std::ptr::NonNull<Block>,
    blocks: usize,
}

/// Every page is written: mapping them all at once costs less than a fault for each.
#[cfg(target_os = "linux")]
const PREFAULT: libc::c_int = libc::MAP_POPULATE;
#[cfg(not(target_os = "linux"))]
const PREFAULT: libc::c_int = 0;

impl WorkingMemory {
    fn new(blocks: usize) -> Result<Self> {
        let length = blocks.checked_mul(Block::SIZE).filter(|&n| n > 0).ok_or_else(|| internal("no memory cost"))?;
        // SAFETY: an anonymous private mapping of `length` bytes at an address the kernel picks;
        // no existing memory is touched.
        let mapped = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                length,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | PREFAULT,
                -1,
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            return Err(internal(std::io::Error::last_os_error()));
        }
        let start = std::ptr::NonNull::new(mapped.cast::<Block>()).ok_or_else(|| internal("null mapping"))?;
        Ok(Self { start, blocks })
    }

    fn blocks(&mut self) -> &mut [Block] {
        // SAFETY: the mapping holds `blocks` blocks, is page-aligned (more than a block's 64-byte
        // alignment) and zero-filled (a valid all-zero block), and only this value refers to it.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.blocks) }
    }
}

impl Drop for WorkingMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made, which nothing refers to any more.
        unsafe { libc::munmap(self.start.as_ptr().cast(), self.blocks * Block::SIZE) };
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn hashes_verify_only_the_right_password() {
        let hash = super::hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{hash}");
        assert!(super::verify(Some(hash.clone()), "correct horse".into()).await.unwrap());
        assert!(!super::verify(Some(hash.clone()), "wrong".into()).await.unwrap());
        assert!(!super::verify(None, "anything".into()).await.unwrap());
        assert!(!super::verify(Some("not a hash".into()), "x".into()).await.unwrap());

        // A standard PHC string: the argon2 crate's own verifier reads and checks it too.
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(argon2::Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
        assert!(argon2::Argon2::default().verify_password(b"wrong", &parsed).is_err());
        // A fresh salt each time.
        assert_ne!(super::hash("correct horse".into()).await.unwrap(), hash);
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
