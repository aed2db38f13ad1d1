//! Accounts: registration, login sessions, tokens, devices, passwords and deactivation.

pub mod admin;
pub mod erasure;
pub mod openid;
pub mod password;
pub mod shared_secret;
pub mod token_cache;
pub mod tokens;
pub mod uiaa;
pub mod username;

use std::time::Duration;

use http::StatusCode;
use ruma::api::client::uiaa::{AuthData, AuthFlow, AuthType};
use ruma::api::error::ErrorKind;
use ruma::{OwnedDeviceId, OwnedUserId, UserId};

use crate::config::RegistrationMode;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::{NewAccount, NewDevice, NewTokens, RegisterOutcome};

/// The caller of an authenticated request.
#[derive(Debug, Clone)]
pub struct Authed {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub is_admin: bool,
}

/// Resolves an access token to its user and device.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Authed> {
    let hash = tokens::hash(token);
    let now = state.now_ms();
    let (authed, expires_ts) = match state.token_cache.get(&hash, now) {
        Some(cached) => cached,
        None => {
            let row = state.storage.access_token(&hash).await?;
            let Some(row) = row.filter(|row| !row.deactivated) else { return Err(Error::unknown_token(false)) };
            let user_id =
                OwnedUserId::try_from(row.user_id).map_err(|e| Error::internal(format!("stored user ID: {e}")))?;
            let authed = Authed { user_id, device_id: row.device_id.into(), is_admin: row.is_admin };
            state.token_cache.insert(hash, authed.clone(), row.expires_ts, now);
            (authed, row.expires_ts)
        }
    };
    if expires_ts.is_some_and(|expires| expires <= now) {
        // The client can renew with its refresh token: a "soft logout".
        return Err(Error::unknown_token(true));
    }
    Ok(authed)
}

/// Tokens handed to a client for a new or renewed session.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<Duration>,
}

/// Mints an access token (and a refresh token if asked), returning what the client gets and
/// what is stored.
fn mint_tokens(state: &AppState, with_refresh: bool) -> (IssuedTokens, NewTokens) {
    let now = state.now_ms();
    let (access_token, access_hash) = tokens::new_token("myat_");
    if !with_refresh {
        let issued = IssuedTokens { access_token, refresh_token: None, expires_in: None };
        return (issued, NewTokens { access_hash, access_expires_ts: None, refresh: None });
    }
    let auth = &state.config.auth;
    let (refresh_token, refresh_hash) = tokens::new_token("myrt_");
    let lifetime = Duration::from_secs(auth.refreshable_access_token_lifetime_secs);
    let refresh_expires =
        (auth.refresh_token_lifetime_secs > 0).then(|| now + secs_to_ms(auth.refresh_token_lifetime_secs));
    let stored = NewTokens {
        access_hash,
        access_expires_ts: Some(now + secs_to_ms(auth.refreshable_access_token_lifetime_secs)),
        refresh: Some((refresh_hash, refresh_expires)),
    };
    (IssuedTokens { access_token, refresh_token: Some(refresh_token), expires_in: Some(lifetime) }, stored)
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn weak_password(min: usize) -> Error {
    Error::matrix(
        StatusCode::BAD_REQUEST,
        ErrorKind::WeakPassword,
        format!("Password must be at least {min} characters"),
    )
}

fn check_password_policy(state: &AppState, password: &str) -> Result<()> {
    let min = state.config.auth.password_min_length;
    if password.chars().count() < min { Err(weak_password(min)) } else { Ok(()) }
}

/// A registration request, independent of HTTP.
#[derive(Debug, Default)]
pub struct Registration {
    pub username: Option<String>,
    pub password: Option<String>,
    pub device_id: Option<OwnedDeviceId>,
    pub initial_device_display_name: Option<String>,
    pub inhibit_login: bool,
    pub refresh_token: bool,
    pub guest: bool,
}

#[derive(Debug)]
pub struct Registered {
    pub user_id: OwnedUserId,
    pub session: Option<(OwnedDeviceId, IssuedTokens)>,
}

/// Registers an account through user-interactive auth as the configured mode requires.
pub async fn register(state: &AppState, registration: Registration, auth: Option<&AuthData>) -> Result<Registered> {
    let flows = match state.config.registration {
        RegistrationMode::Disabled => return Err(Error::forbidden("Registration is disabled on this server")),
        RegistrationMode::Open => vec![AuthFlow::new(vec![AuthType::Dummy])],
        RegistrationMode::Token => vec![AuthFlow::new(vec![AuthType::RegistrationToken])],
    };
    if registration.guest {
        return Err(Error::matrix(StatusCode::FORBIDDEN, ErrorKind::GuestAccessForbidden, "Guest access is disabled"));
    }
    // Problems the client can fix are reported before it goes through the auth stages.
    let user_id = match &registration.username {
        Some(name) => {
            let user_id = username::user_id_for_registration(name, &state.server_name)?;
            ensure_available(state, &user_id).await?;
            user_id
        }
        None => generated_user_id(state).await?,
    };
    if let Some(password) = &registration.password {
        check_password_policy(state, password)?;
    }

    let request = uiaa::UiaaRequest { purpose: "register", flows, user: None };
    let completed = uiaa::check(state, auth, request).await?;

    let Some(password) = registration.password else {
        return Err(Error::missing_param("A password is required"));
    };
    let password_hash = password::hash(password).await?;
    let displayname = user_id.localpart().to_owned();
    let session = (!registration.inhibit_login).then(|| {
        let device_id = registration.device_id.clone().unwrap_or_else(|| tokens::new_device_id().into());
        let (issued, stored) = mint_tokens(state, registration.refresh_token);
        (device_id, issued, stored)
    });
    let new_device = session.as_ref().map(|(device_id, _, stored)| NewDevice {
        device_id: device_id.to_string(),
        display_name: registration.initial_device_display_name.clone(),
        ip: None,
        tokens: stored.clone(),
    });
    let account = NewAccount {
        user_id: user_id.as_str(),
        password_hash: Some(&password_hash),
        is_admin: false,
        displayname: &displayname,
        registration_token: completed.registration_token.as_deref(),
    };
    match state.storage.register_account(account, new_device.as_ref(), state.now_ms()).await? {
        RegisterOutcome::Created => {}
        RegisterOutcome::UserIdTaken => return Err(user_in_use()),
        RegisterOutcome::RegistrationTokenUnusable => {
            return Err(Error::matrix(
                StatusCode::UNAUTHORIZED,
                ErrorKind::Unauthorized,
                "Registration token is no longer valid",
            ));
        }
    }
    tracing::info!(user_id = %user_id, "registered user");
    Ok(Registered { user_id, session: session.map(|(device_id, issued, _)| (device_id, issued)) })
}

fn user_in_use() -> Error {
    Error::matrix(StatusCode::BAD_REQUEST, ErrorKind::UserInUse, "User ID already taken")
}

async fn ensure_available(state: &AppState, user_id: &UserId) -> Result<()> {
    if state.storage.user(user_id.as_str()).await?.is_some() { Err(user_in_use()) } else { Ok(()) }
}

/// `GET /register/available`: valid and not taken (deactivated IDs stay taken).
pub async fn check_username_available(state: &AppState, requested: &str) -> Result<()> {
    if state.config.registration == RegistrationMode::Disabled {
        return Err(Error::forbidden("Registration is disabled on this server"));
    }
    let user_id = username::user_id_for_registration(requested, &state.server_name)?;
    ensure_available(state, &user_id).await
}

async fn generated_user_id(state: &AppState) -> Result<OwnedUserId> {
    for _ in 0..8 {
        let localpart = format!("u{}", tokens::random_string(b"abcdefghijklmnopqrstuvwxyz0123456789", 11));
        let user_id = username::user_id_for_registration(&localpart, &state.server_name)?;
        if state.storage.user(user_id.as_str()).await?.is_none() {
            return Ok(user_id);
        }
    }
    Err(Error::internal("could not generate a free user ID"))
}

/// Creates an account directly (CLI and admin bootstrap): no UIAA, no device.
pub async fn create_account(
    state: &AppState,
    localpart: &str,
    password: Option<String>,
    is_admin: bool,
) -> Result<OwnedUserId> {
    let user_id = username::user_id_for_registration(localpart, &state.server_name)?;
    if let Some(password) = &password {
        check_password_policy(state, password)?;
    }
    let password_hash = match password {
        Some(password) => Some(password::hash(password).await?),
        None => None,
    };
    let account = NewAccount {
        user_id: user_id.as_str(),
        password_hash: password_hash.as_deref(),
        is_admin,
        displayname: user_id.localpart(),
        registration_token: None,
    };
    match state.storage.register_account(account, None, state.now_ms()).await? {
        RegisterOutcome::Created => Ok(user_id),
        _ => Err(user_in_use()),
    }
}

/// Sets a new password for a local user without knowing the old one (an administrator's
/// action); optionally logs out all their devices.
pub async fn reset_password(
    state: &AppState,
    name: &str,
    password: String,
    logout_devices: bool,
) -> Result<OwnedUserId> {
    let unknown = || Error::not_found(format!("No user {name} on this server"));
    let user_id = username::user_id_for_login(name, &state.server_name).ok_or_else(unknown)?;
    let user = state.storage.user(user_id.as_str()).await?.ok_or_else(unknown)?;
    if user.deactivated {
        return Err(Error::forbidden("The account is deactivated"));
    }
    check_password_policy(state, &password)?;
    let hash = password::hash(password).await?;
    state.storage.set_password_hash(user_id.as_str(), &hash).await?;
    if logout_devices {
        state.storage.delete_other_devices(user_id.as_str(), None).await?;
        state.token_cache.clear();
    }
    Ok(user_id)
}

/// A password login request, independent of HTTP.
#[derive(Debug)]
pub struct PasswordLogin {
    pub identifier: String,
    pub password: String,
    pub device_id: Option<OwnedDeviceId>,
    pub initial_device_display_name: Option<String>,
    pub refresh_token: bool,
}

pub async fn login_with_password(
    state: &AppState,
    login: PasswordLogin,
) -> Result<(OwnedUserId, OwnedDeviceId, IssuedTokens)> {
    let invalid = || Error::forbidden("Invalid username or password");
    let user_id = username::user_id_for_login(&login.identifier, &state.server_name).ok_or_else(invalid)?;
    let user = state.storage.user(user_id.as_str()).await?;
    let stored_hash = user.as_ref().filter(|u| !u.deactivated).and_then(|u| u.password_hash.clone());
    if !password::verify(stored_hash, login.password).await? {
        return Err(invalid());
    }
    let device_id = login.device_id.unwrap_or_else(|| tokens::new_device_id().into());
    let (issued, stored) = mint_tokens(state, login.refresh_token);
    let device = NewDevice {
        device_id: device_id.to_string(),
        display_name: login.initial_device_display_name,
        ip: None,
        tokens: stored,
    };
    state.storage.login_device(user_id.as_str(), &device, state.now_ms()).await?;
    state.token_cache.clear();
    Ok((user_id, device_id, issued))
}

/// A new device with an access token for an account created without a login (shared-secret
/// registration).
pub async fn open_session(state: &AppState, user_id: &UserId) -> Result<(OwnedDeviceId, IssuedTokens)> {
    let device_id: OwnedDeviceId = tokens::new_device_id().into();
    let (issued, stored) = mint_tokens(state, false);
    let device = NewDevice { device_id: device_id.to_string(), display_name: None, ip: None, tokens: stored };
    state.storage.login_device(user_id.as_str(), &device, state.now_ms()).await?;
    Ok((device_id, issued))
}

/// Exchanges a refresh token for new tokens on the same device.
pub async fn refresh(state: &AppState, refresh_token: &str) -> Result<IssuedTokens> {
    let (issued, stored) = mint_tokens(state, true);
    let exchanged = state.storage.exchange_refresh_token(&tokens::hash(refresh_token), &stored, state.now_ms()).await?;
    state.token_cache.clear();
    match exchanged {
        Some(_) => Ok(issued),
        None => Err(Error::unknown_token(false)),
    }
}

/// Logs out one session: the device goes, and with it its tokens.
pub async fn logout(state: &AppState, authed: &Authed) -> Result<()> {
    state.storage.delete_devices(authed.user_id.as_str(), &[authed.device_id.to_string()]).await?;
    state.token_cache.clear();
    Ok(())
}

pub async fn logout_all(state: &AppState, authed: &Authed) -> Result<()> {
    state.storage.delete_other_devices(authed.user_id.as_str(), None).await?;
    state.token_cache.clear();
    Ok(())
}

/// Changes the password after a password UIAA stage; optionally logs out every other device.
pub async fn change_password(
    state: &AppState,
    authed: &Authed,
    new_password: String,
    logout_devices: bool,
    auth: Option<&AuthData>,
) -> Result<()> {
    check_password_policy(state, &new_password)?;
    let request =
        uiaa::UiaaRequest { purpose: "change_password", flows: uiaa::password_flows(), user: Some(&authed.user_id) };
    uiaa::check(state, auth, request).await?;
    let hash = password::hash(new_password).await?;
    state.storage.set_password_hash(authed.user_id.as_str(), &hash).await?;
    if logout_devices {
        state.storage.delete_other_devices(authed.user_id.as_str(), Some(authed.device_id.as_str())).await?;
        state.token_cache.clear();
    }
    Ok(())
}

/// Deactivates the account after a password UIAA stage; `erase` also erases the user's data
/// (see [`erasure`]).
pub async fn deactivate(state: &AppState, authed: &Authed, auth: Option<&AuthData>, erase: bool) -> Result<()> {
    let request =
        uiaa::UiaaRequest { purpose: "deactivate", flows: uiaa::password_flows(), user: Some(&authed.user_id) };
    uiaa::check(state, auth, request).await?;
    deactivate_account(state, &authed.user_id).await?;
    if erase {
        erasure::start(state, &authed.user_id).await?;
    }
    tracing::info!(user_id = %authed.user_id, erase, "deactivated user");
    Ok(())
}

/// Deactivation itself, after the user's own UIAA or on an admin's request: the account stays
/// (flagged, without password) so its ID is never reissued; every device and token goes.
pub async fn deactivate_account(state: &AppState, user_id: &UserId) -> Result<()> {
    state.storage.deactivate_user(user_id.as_str()).await?;
    state.token_cache.clear();
    state.rooms.notify_change();
    Ok(())
}

/// Deletes devices after a password UIAA stage. `purpose` keeps single and bulk deletion
/// sessions apart.
pub async fn delete_devices(
    state: &AppState,
    authed: &Authed,
    device_ids: &[OwnedDeviceId],
    auth: Option<&AuthData>,
    purpose: &'static str,
) -> Result<()> {
    let request = uiaa::UiaaRequest { purpose, flows: uiaa::password_flows(), user: Some(&authed.user_id) };
    uiaa::check(state, auth, request).await?;
    let ids: Vec<String> = device_ids.iter().map(ToString::to_string).collect();
    state.storage.delete_devices(authed.user_id.as_str(), &ids).await?;
    state.token_cache.clear();
    state.rooms.notify_change();
    Ok(())
}
