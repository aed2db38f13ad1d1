//! Account changes made by a server admin (admin API): no UIAA, no password of the user's.

use ruma::{OwnedDeviceId, UserId};

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::storage::{ProfileField, UserRow};

/// What an admin asks to change on (or create as) an account; `None` leaves a field alone.
#[derive(Debug, Default)]
pub struct UserChanges {
    pub password: Option<String>,
    /// Log out every device when the password changes (default true, as Synapse).
    pub logout_devices: bool,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub admin: Option<bool>,
    pub deactivated: Option<bool>,
}

/// Whether `upsert_user` created the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Modified,
}

fn not_found() -> Error {
    Error::not_found("User not found")
}

/// The account, which must exist.
pub async fn existing_user(state: &AppState, user_id: &UserId) -> Result<UserRow> {
    state.storage.user(user_id.as_str()).await?.ok_or_else(not_found)
}

/// Creates the account if it does not exist, otherwise applies `changes` to it.
pub async fn upsert_user(
    state: &AppState,
    caller: &UserId,
    user_id: &UserId,
    changes: UserChanges,
) -> Result<Upserted> {
    let Some(user) = state.storage.user(user_id.as_str()).await? else {
        if changes.deactivated == Some(true) {
            return Err(Error::invalid_param("Cannot create a deactivated account"));
        }
        super::create_account(state, user_id.as_str(), changes.password, changes.admin.unwrap_or(false)).await?;
        set_profile(state, user_id, changes.displayname, changes.avatar_url).await?;
        return Ok(Upserted::Created);
    };
    if changes.admin == Some(false) && caller == user_id {
        return Err(Error::invalid_param("You may not demote yourself"));
    }
    match (changes.deactivated, user.deactivated) {
        (Some(true), false) => deactivate(state, user_id, false).await?,
        (Some(false), true) => {
            if changes.password.is_none() {
                return Err(Error::invalid_param("Must provide a password to re-activate an account"));
            }
            state.storage.reactivate_user(user_id.as_str()).await?;
        }
        _ => {}
    }
    let deactivated = changes.deactivated.unwrap_or(user.deactivated);
    if let Some(password) = changes.password.filter(|_| !deactivated) {
        super::reset_password(state, user_id.as_str(), password, changes.logout_devices).await?;
    }
    if let Some(admin) = changes.admin {
        state.storage.set_admin(user_id.as_str(), admin).await?;
        // The cache holds the admin flag with each token.
        state.token_cache.clear();
    }
    if !deactivated {
        set_profile(state, user_id, changes.displayname, changes.avatar_url).await?;
    }
    Ok(Upserted::Modified)
}

async fn set_profile(
    state: &AppState,
    user_id: &UserId,
    displayname: Option<String>,
    avatar_url: Option<String>,
) -> Result<()> {
    if let Some(name) = displayname {
        crate::rooms::profile::set_field(state, user_id, user_id, ProfileField::DisplayName, Some(name)).await?;
    }
    if let Some(url) = avatar_url {
        crate::rooms::profile::set_field(state, user_id, user_id, ProfileField::AvatarUrl, Some(url)).await?;
    }
    Ok(())
}

/// Deactivates the account as the user's own deactivation does; `erase` also erases the user's
/// data in the background (see [`super::erasure`]).
pub async fn deactivate(state: &AppState, user_id: &UserId, erase: bool) -> Result<()> {
    existing_user(state, user_id).await?;
    super::deactivate_account(state, user_id).await?;
    if erase {
        super::erasure::start(state, user_id).await?;
    }
    tracing::info!(user_id = %user_id, erase, "an admin deactivated a user");
    Ok(())
}

/// Deletes one of the user's devices (and so its tokens).
pub async fn delete_device(state: &AppState, user_id: &UserId, device_id: &OwnedDeviceId) -> Result<()> {
    existing_user(state, user_id).await?;
    if state.storage.device(user_id.as_str(), device_id.as_str()).await?.is_none() {
        return Err(Error::not_found("Device not found"));
    }
    state.storage.delete_devices(user_id.as_str(), &[device_id.to_string()]).await?;
    state.token_cache.clear();
    state.rooms.notify_change();
    Ok(())
}
