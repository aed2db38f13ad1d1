//! The admin API: Synapse's paths and JSON shapes under `/_synapse/admin/` (so tools such as
//! synapse-admin work) and Myelin's own readers under `/_myelin/admin/`. These are not ruma
//! types: plain axum handlers with serde structs, one file per area. Every endpoint needs an
//! admin's access token ([`Admin`]) except shared-secret registration, which the secret
//! authenticates; every change is recorded in the audit log ([`audited`]).

mod access_log;
mod audit_log;
mod devices;
mod media;
mod purge_history;
mod register;
mod registration_tokens;
mod reports;
mod retention;
mod room_deletion;
mod rooms;
mod server;
mod users;

use std::future::Future;

use axum::Router;
use axum::extract::{FromRequestParts, Query};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use ruma::{OwnedUserId, UserId};
use serde::de::DeserializeOwned;

pub use crate::api::JsonBody as AdminJson;

use crate::accounts::Authed;
use crate::error::{Error, Result};
use crate::state::AppState;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = server::routes(router);
    let router = users::routes(router);
    let router = devices::routes(router);
    let router = registration_tokens::routes(router);
    let router = register::routes(router);
    let router = rooms::routes(router);
    let router = reports::routes(router);
    let router = media::routes(router);
    let router = room_deletion::routes(router);
    let router = purge_history::routes(router);
    let router = audit_log::routes(router);
    let router = retention::routes(router);
    access_log::routes(router)
}

/// The caller of an admin endpoint: a user with the admin flag. Missing token: 401
/// `M_MISSING_TOKEN`; a non-admin's token: 403 `M_FORBIDDEN`.
pub struct Admin(pub Authed);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let crate::api::Caller(authed) = crate::api::Caller::from_request_parts(parts, state).await?;
        if !authed.is_admin {
            return Err(Error::forbidden("You are not a server admin"));
        }
        Ok(Self(authed))
    }
}

/// Query parameters, with bad values answered as 400 `M_INVALID_PARAM`.
pub struct AdminQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for AdminQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(value)| Self(value))
            .map_err(|e| Error::invalid_param(format!("Invalid query parameter: {}", e.body_text())))
    }
}

/// A JSON response with a status.
pub fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A user ID from a path that must name a local user.
pub fn local_user_id(state: &AppState, raw: &str) -> Result<OwnedUserId> {
    let user_id = UserId::parse(raw).map_err(|e| Error::invalid_param(format!("Invalid user ID: {e}")))?;
    if user_id.server_name() != state.server_name {
        return Err(Error::invalid_param("Can only look up local users"));
    }
    Ok(user_id)
}

/// Runs an admin action and records it, with its outcome, in the audit log. `label` names the
/// action and its target once the outcome is known. Both run in a task of their own: a client
/// that disconnects mid-request cannot leave a change done but unrecorded.
pub async fn audited<T, W, L>(state: &AppState, actor: &str, params: serde_json::Value, work: W, label: L) -> Result<T>
where
    T: Send + 'static,
    W: Future<Output = Result<T>> + Send + 'static,
    L: FnOnce(&Result<T>) -> (&'static str, Option<String>) + Send + 'static,
{
    let (state, actor) = (state.clone(), actor.to_owned());
    let task = tokio::spawn(async move {
        let result = work.await;
        let (action, target) = label(&result);
        let outcome = crate::audit::outcome(&result);
        crate::audit::record(&state.storage, state.now_ms(), &actor, action, target.as_deref(), params, outcome)
            .await?;
        result
    });
    task.await.map_err(|e| Error::internal(format!("an audited admin action failed: {e}")))?
}

impl Admin {
    /// The audit log's actor: the admin's user ID.
    pub fn actor(&self) -> &str {
        self.0.user_id.as_str()
    }
}

/// `from`/`limit` offset paging as Synapse takes it (`from` may be a string token).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub from: i64,
    pub limit: i64,
}

impl Page {
    pub fn parse(from: Option<&str>, limit: Option<i64>, default_limit: i64) -> Result<Self> {
        let from = match from {
            None | Some("") => 0,
            Some(text) => {
                text.parse::<i64>().map_err(|_| Error::invalid_param("from must be a non-negative integer"))?
            }
        };
        let limit = limit.unwrap_or(default_limit);
        if from < 0 {
            return Err(Error::invalid_param("from must be a non-negative integer"));
        }
        if limit < 0 {
            return Err(Error::invalid_param("limit must be a non-negative integer"));
        }
        Ok(Self { from, limit: limit.min(1000) })
    }

    /// The next page's `from`, when there is more after this one.
    pub fn next(&self, returned: usize, total: i64) -> Option<i64> {
        let end = self.from + i64::try_from(returned).unwrap_or(i64::MAX);
        (end < total && returned > 0).then_some(end)
    }
}

/// `dir=f|b`; `default_backwards` when absent.
pub fn backwards(dir: Option<&str>, default_backwards: bool) -> Result<bool> {
    match dir {
        None => Ok(default_backwards),
        Some("f") => Ok(false),
        Some("b") => Ok(true),
        Some(_) => Err(Error::invalid_param("dir must be f or b")),
    }
}
