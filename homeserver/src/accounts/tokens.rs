//! Opaque random tokens and identifiers. Tokens are 256-bit random values; only their SHA-256
//! hashes are stored.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system has no random source");
    bytes
}

/// A new token with a readable prefix (`myat_` access, `myrt_` refresh) and its hash.
pub fn new_token(prefix: &str) -> (String, Vec<u8>) {
    let token = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
    let hash = hash(&token);
    (token, hash)
}

pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// `len` random characters from `alphabet`.
pub fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in random_bytes::<32>() {
            // Rejection sampling keeps the distribution uniform.
            let limit = 256 - (256 % alphabet.len());
            if (byte as usize) < limit && out.len() < len {
                out.push(alphabet[byte as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// Device IDs in Synapse's style: ten upper-case letters.
pub fn new_device_id() -> String {
    random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10)
}

/// An opaque session or token identifier.
pub fn new_opaque_id(len: usize) -> String {
    random_string(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hashed() {
        let (a, hash_a) = new_token("myat_");
        let (b, _) = new_token("myat_");
        assert_ne!(a, b);
        assert!(a.starts_with("myat_") && a.len() == 5 + 43);
        assert_eq!(hash_a, hash(&a));
        assert_eq!(hash_a.len(), 32);
        let device = new_device_id();
        assert_eq!(device.len(), 10);
        assert!(device.chars().all(|c| c.is_ascii_uppercase()));
    }
}
