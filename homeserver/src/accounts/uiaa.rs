//! User-interactive authentication: sessions stored in the database, stages checked per the spec.

use ruma::UserId;
use ruma::api::client::uiaa::{AuthData, AuthFlow, AuthType, UiaaInfo};
use ruma::api::error::{ErrorKind, StandardErrorBody};
use serde::{Deserialize, Serialize};

use super::{password, tokens, username};
use crate::error::{Error, Result};
use crate::state::AppState;

/// What a UIAA-protected operation asks for.
pub struct UiaaRequest<'a> {
    /// Which operation the session is for; a session cannot be reused for another.
    pub purpose: &'static str,
    pub flows: Vec<AuthFlow>,
    /// The user the operation acts for (`None` during registration).
    pub user: Option<&'a UserId>,
}

/// The outcome of a completed flow.
#[derive(Debug, Default)]
pub struct Completed {
    /// The registration token the client proved, to be consumed by the registration.
    pub registration_token: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    stages: Vec<AuthType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registration_token: Option<String>,
}

/// The single password stage used to confirm sensitive account operations.
pub fn password_flows() -> Vec<AuthFlow> {
    vec![AuthFlow::new(vec![AuthType::Password])]
}

/// Checks the request's `auth` against the flows. Returns `Ok` once a flow is complete;
/// otherwise the `Err` carries the 401 UIAA body (with an `errcode` when a stage failed).
pub async fn check(state: &AppState, auth: Option<&AuthData>, request: UiaaRequest<'_>) -> Result<Completed> {
    let now = state.now_ms();
    let lifetime_ms =
        i64::try_from(state.config.auth.uiaa_session_lifetime_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let user = request.user.map(|u| u.as_str());

    let Some(auth) = auth else {
        let session_id = start_session(state, &request, now, lifetime_ms).await?;
        return Err(challenge(&request, session_id, &Progress::default(), None));
    };

    let (session_id, mut progress) = match auth.session() {
        Some(session_id) => {
            let row = state.storage.uiaa_session(session_id).await?;
            let usable = row.filter(|row| {
                row.purpose == request.purpose && row.user_id.as_deref() == user && row.created_ts + lifetime_ms > now
            });
            let Some(row) = usable else {
                return Err(Error::matrix(
                    http::StatusCode::BAD_REQUEST,
                    ErrorKind::Unknown,
                    "Unknown or expired UIA session",
                ));
            };
            let progress: Progress = serde_json::from_value(row.progress)
                .map_err(|e| Error::internal(format!("corrupt UIA session: {e}")))?;
            (row.session_id, progress)
        }
        None => (start_session(state, &request, now, lifetime_ms).await?, Progress::default()),
    };

    if let Some(stage) = auth.auth_type() {
        let offered = request.flows.iter().any(|flow| flow.stages.contains(&stage));
        if !offered {
            let error = stage_error(ErrorKind::Unrecognized, "This authentication type is not offered here");
            return Err(challenge(&request, session_id, &progress, Some(error)));
        }
        if let Err(error) = run_stage(state, auth, &request, &mut progress).await? {
            return Err(challenge(&request, session_id, &progress, Some(error)));
        }
        if !progress.stages.contains(&stage) {
            progress.stages.push(stage);
        }
    }

    let complete = request.flows.iter().any(|flow| flow.stages.iter().all(|s| progress.stages.contains(s)));
    if complete {
        state.storage.delete_uiaa_session(&session_id).await?;
        return Ok(Completed { registration_token: progress.registration_token });
    }
    let stored = serde_json::to_value(&progress).map_err(|e| Error::internal(e.to_string()))?;
    state.storage.set_uiaa_progress(&session_id, &stored).await?;
    Err(challenge(&request, session_id, &progress, None))
}

async fn start_session(state: &AppState, request: &UiaaRequest<'_>, now: i64, lifetime_ms: i64) -> Result<String> {
    // Expired sessions are swept whenever a new one starts, so the table stays small.
    state.storage.delete_uiaa_sessions_before(now.saturating_sub(lifetime_ms)).await?;
    let session_id = tokens::new_opaque_id(24);
    let progress = serde_json::to_value(Progress::default()).map_err(|e| Error::internal(e.to_string()))?;
    let user = request.user.map(|u| u.as_str());
    state.storage.create_uiaa_session(&session_id, user, request.purpose, &progress, now).await?;
    Ok(session_id)
}

/// Runs one stage. The outer `Result` is a server failure; the inner one a failed stage.
async fn run_stage(
    state: &AppState,
    auth: &AuthData,
    request: &UiaaRequest<'_>,
    progress: &mut Progress,
) -> Result<Result<(), StandardErrorBody>> {
    match auth {
        AuthData::Dummy(_) => Ok(Ok(())),
        AuthData::Password(stage) => {
            let Some(expected) = request.user else {
                return Ok(Err(stage_error(ErrorKind::Forbidden, "No account to authenticate")));
            };
            let named = match &stage.identifier {
                ruma::api::client::uiaa::UserIdentifier::Matrix(id) => {
                    username::user_id_for_login(&id.user, &state.server_name)
                }
                _ => None,
            };
            if named.as_deref() != Some(expected) {
                return Ok(Err(stage_error(ErrorKind::Forbidden, "Invalid username or password")));
            }
            let stored = state.storage.user(expected.as_str()).await?.and_then(|u| u.password_hash);
            if password::verify(stored, stage.password.clone()).await? {
                Ok(Ok(()))
            } else {
                Ok(Err(stage_error(ErrorKind::Forbidden, "Invalid username or password")))
            }
        }
        AuthData::RegistrationToken(stage) => {
            let row = state.storage.registration_token(&stage.token).await?;
            if row.is_some_and(|row| row.is_valid(state.now_ms())) {
                progress.registration_token = Some(stage.token.clone());
                Ok(Ok(()))
            } else {
                Ok(Err(stage_error(ErrorKind::Unauthorized, "Invalid registration token")))
            }
        }
        _ => Ok(Err(stage_error(ErrorKind::Unrecognized, "This authentication type is not supported"))),
    }
}

fn stage_error(kind: ErrorKind, message: &str) -> StandardErrorBody {
    StandardErrorBody::new(kind, message.to_owned())
}

fn challenge(
    request: &UiaaRequest<'_>,
    session_id: String,
    progress: &Progress,
    error: Option<StandardErrorBody>,
) -> Error {
    let mut info = UiaaInfo::new(request.flows.clone());
    info.session = Some(session_id);
    info.completed = progress.stages.clone();
    info.params = Some(serde_json::value::to_raw_value(&serde_json::json!({})).expect("static JSON"));
    info.auth_error = error.map(Box::new);
    Error::Uiaa(Box::new(info))
}
