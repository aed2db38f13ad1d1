//! OpenID tokens: a user proves their identity to a third party (an integration manager, a
//! widget), which asks our federation API who the token belongs to.

use std::time::Duration;

use ruma::{OwnedUserId, UserId};

use super::tokens;
use crate::error::{Error, Result};
use crate::state::AppState;

/// How long a token stays valid.
pub const LIFETIME: Duration = Duration::from_secs(3600);

/// Issues a token for `caller`, who may only ask for themselves.
pub async fn request_token(state: &AppState, caller: &UserId, target: &UserId) -> Result<String> {
    if caller != target {
        return Err(Error::forbidden("You can only request OpenID tokens for yourself"));
    }
    let (token, hash) = tokens::new_token("myoi_");
    let now = state.now_ms();
    let lifetime_ms = i64::try_from(LIFETIME.as_millis()).unwrap_or(i64::MAX);
    state.storage.insert_openid_token(&hash, caller.as_str(), now.saturating_add(lifetime_ms), now).await?;
    Ok(token)
}

/// The user a valid token belongs to; `M_UNKNOWN_TOKEN` for unknown or expired tokens.
pub async fn userinfo(state: &AppState, token: &str) -> Result<OwnedUserId> {
    let user = state.storage.openid_token_user(&tokens::hash(token), state.now_ms()).await?;
    let user = user.ok_or_else(|| Error::unknown_token(false))?;
    OwnedUserId::try_from(user).map_err(|e| Error::internal(format!("stored user ID: {e}")))
}
