//! Shared-secret registration as Synapse does it (`register_new_matrix_user`): whoever holds
//! `registration_shared_secret` asks for a one-time nonce, then registers an account with an
//! HMAC-SHA1 over the nonce and the account's details.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use http::StatusCode;
use ruma::{OwnedDeviceId, OwnedUserId};
use sha1::Sha1;

use super::IssuedTokens;
use crate::error::{Error, Result};
use crate::state::AppState;

/// How long a nonce stays usable, as Synapse.
const NONCE_LIFETIME_MS: i64 = 60_000;

/// Nonces handed out and not yet used: nonce → when it was issued.
#[derive(Default)]
pub struct Nonces(Mutex<HashMap<String, i64>>);

impl Nonces {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn secret(state: &AppState) -> Result<&str> {
    match state.config.registration_shared_secret.as_str() {
        "" => Err(Error::matrix(
            StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::Unknown,
            "Shared secret registration is not enabled",
        )),
        secret => Ok(secret),
    }
}

/// A fresh nonce (expired ones are forgotten on the way).
pub fn new_nonce(state: &AppState) -> Result<String> {
    secret(state)?;
    let now = state.now_ms();
    let nonce = super::tokens::new_opaque_id(32);
    let mut nonces = state.registration_nonces.lock();
    nonces.retain(|_, issued| now - *issued < NONCE_LIFETIME_MS);
    nonces.insert(nonce.clone(), now);
    Ok(nonce)
}

/// One shared-secret registration request.
#[derive(Debug)]
pub struct SharedSecretRegistration {
    pub nonce: String,
    pub username: String,
    pub password: String,
    pub displayname: Option<String>,
    pub admin: bool,
    pub user_type: Option<String>,
    /// Hex HMAC-SHA1 of the fields above under the shared secret.
    pub mac: String,
}

/// The MAC Synapse's tools compute: fields joined by NUL bytes.
pub fn mac(secret: &str, request: &SharedSecretRegistration) -> Result<Hmac<Sha1>> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).map_err(|e| Error::internal(e.to_string()))?;
    mac.update(request.nonce.as_bytes());
    mac.update(b"\0");
    mac.update(request.username.as_bytes());
    mac.update(b"\0");
    mac.update(request.password.as_bytes());
    mac.update(b"\0");
    mac.update(if request.admin { b"admin" } else { b"notadmin" });
    if let Some(user_type) = &request.user_type {
        mac.update(b"\0");
        mac.update(user_type.as_bytes());
    }
    Ok(mac)
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// Checks the nonce (used up either way) and the MAC: whether the caller holds the secret.
pub fn verify(state: &AppState, request: &SharedSecretRegistration) -> Result<()> {
    let secret = secret(state)?;
    let issued = state.registration_nonces.lock().remove(&request.nonce);
    if issued.is_none_or(|issued| state.now_ms() - issued >= NONCE_LIFETIME_MS) {
        return Err(Error::invalid_param("Unrecognised nonce"));
    }
    let given = from_hex(&request.mac).ok_or_else(|| Error::forbidden("HMAC incorrect"))?;
    mac(secret, request)?.verify_slice(&given).map_err(|_| Error::forbidden("HMAC incorrect"))
}

/// Creates the verified request's account and logs it in.
pub async fn register(
    state: &AppState,
    request: SharedSecretRegistration,
) -> Result<(OwnedUserId, OwnedDeviceId, IssuedTokens)> {
    if request.user_type.is_some() {
        return Err(Error::invalid_param("User types are not supported"));
    }
    let user_id = super::create_account(state, &request.username, Some(request.password), request.admin).await?;
    if let Some(name) = request.displayname {
        let field = crate::storage::ProfileField::DisplayName;
        state.storage.set_profile_field(user_id.as_str(), field, Some(&name)).await?;
    }
    let (device_id, tokens) = super::open_session(state, &user_id).await?;
    Ok((user_id, device_id, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_matches_synapse() {
        // Computed with Synapse's algorithm (Python's hmac + hashlib.sha1).
        let request = SharedSecretRegistration {
            nonce: "abc".into(),
            username: "alice".into(),
            password: "pw".into(),
            displayname: None,
            admin: true,
            user_type: None,
            mac: String::new(),
        };
        let digest = mac("secret", &request).unwrap().finalize().into_bytes();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "dc5ed98b283077684552e3f72d67f26b3366bf58");
        assert_eq!(from_hex("0aff"), Some(vec![0x0a, 0xff]));
        assert_eq!(from_hex("0g"), None);
        assert_eq!(from_hex("abc"), None);
    }
}
