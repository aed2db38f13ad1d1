//! One error type for the whole server, rendered as a Matrix JSON error.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ruma::api::OutgoingResponseExt;
use ruma::api::client::uiaa::UiaaInfo;
use ruma::api::error::{ErrorBody, ErrorKind, StandardErrorBody, UnknownTokenErrorData};

use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Matrix error for the client: status, errcode (with its data) and a message.
    #[error("{status} {message}")]
    Matrix { status: StatusCode, kind: ErrorKind, message: String },

    /// User-interactive authentication is needed (or a stage failed): 401 with the UIAA body.
    #[error("user-interactive authentication required")]
    Uiaa(Box<UiaaInfo>),

    /// A database failure: logged with context, answered as a generic 500.
    #[error(transparent)]
    Storage(#[from] StorageError),

    /// A server bug or broken invariant: logged, answered as a generic 500.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn matrix(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Matrix { status, kind, message: message.into() }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::FORBIDDEN, ErrorKind::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::NOT_FOUND, ErrorKind::NotFound, message)
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::BAD_REQUEST, ErrorKind::BadJson, message)
    }

    pub fn not_json(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::BAD_REQUEST, ErrorKind::NotJson, message)
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, message)
    }

    pub fn missing_param(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::BAD_REQUEST, ErrorKind::MissingParam, message)
    }

    pub fn missing_token() -> Self {
        Self::matrix(StatusCode::UNAUTHORIZED, ErrorKind::MissingToken, "Missing access token")
    }

    pub fn unknown_token(soft_logout: bool) -> Self {
        let mut data = UnknownTokenErrorData::new();
        data.soft_logout = soft_logout;
        let message = if soft_logout { "Access token has expired" } else { "Unknown access token" };
        Self::matrix(StatusCode::UNAUTHORIZED, ErrorKind::UnknownToken(data), message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge, message)
    }

    pub fn unrecognized(status: StatusCode, message: impl Into<String>) -> Self {
        Self::matrix(status, ErrorKind::Unrecognized, message)
    }

    /// An error with an errcode ruma has no variant for (e.g. `M_INVALID_SIGNATURE`).
    pub fn custom(status: StatusCode, errcode: &str, message: impl Into<String>) -> Self {
        let kind = serde_json::from_value(serde_json::json!({ "errcode": errcode })).unwrap_or(ErrorKind::Unknown);
        Self::matrix(status, kind, message)
    }

    /// A federation request without a valid X-Matrix signature.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized, message)
    }

    /// A failed request to another server, as the client should see it: 504 when it timed out,
    /// 403 when it refused, 502 otherwise. The remote's own message is only logged.
    pub fn remote(e: federation::client::FederationError) -> Self {
        use federation::client::FederationError as F;
        tracing::info!(error = %e, "federation request failed");
        match e {
            F::Timeout(server) => {
                Self::custom(StatusCode::GATEWAY_TIMEOUT, "M_UNKNOWN", format!("{server} did not answer in time"))
            }
            F::Remote { server, status: 403, errcode, .. } => {
                Self::forbidden(format!("{server} refused the request ({errcode})"))
            }
            F::Remote { server, status: 404, .. } => Self::not_found(format!("{server} does not know it")),
            other => {
                let server = match &other {
                    F::Discovery(s) | F::Unreachable(s, _) | F::BadResponse(s, _) | F::Remote { server: s, .. } => {
                        s.clone()
                    }
                    _ => "the remote server".to_owned(),
                };
                Self::custom(
                    StatusCode::BAD_GATEWAY,
                    "M_UNKNOWN",
                    format!("Could not complete the request with {server}"),
                )
            }
        }
    }

    /// Another server answered with something that does not hold up (bad signatures, a room
    /// state without its create event).
    pub fn remote_invalid(server: &ruma::ServerName) -> Self {
        Self::custom(StatusCode::BAD_GATEWAY, "M_UNKNOWN", format!("{server} sent an invalid answer"))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// The status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Matrix { status, .. } => *status,
            Self::Uiaa(_) => StatusCode::UNAUTHORIZED,
            Self::Storage(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The errcode, for tests and logs.
    pub fn errcode(&self) -> String {
        match self {
            Self::Matrix { kind, .. } => kind.errcode().to_string(),
            Self::Uiaa(info) => {
                info.auth_error.as_ref().map_or_else(|| "M_UNAUTHORIZED".to_owned(), |e| e.kind.errcode().to_string())
            }
            Self::Storage(_) | Self::Internal(_) => "M_UNKNOWN".to_owned(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, kind, message) = match self {
            Self::Matrix { status, kind, message } => (status, kind, message),
            Self::Uiaa(info) => {
                let body = serde_json::to_vec(&info).expect("UIAA info always serialises");
                return json_response(StatusCode::UNAUTHORIZED, body);
            }
            Self::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unknown, "Internal server error".to_owned())
            }
            Self::Internal(e) => {
                tracing::error!(error = %e, "internal failure");
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unknown, "Internal server error".to_owned())
            }
        };
        let error = ruma::api::error::Error::new(status, ErrorBody::Standard(StandardErrorBody::new(kind, message)));
        match error.try_into_http_response::<Vec<u8>>() {
            Ok(response) => response.map(axum::body::Body::from),
            Err(e) => {
                tracing::error!(error = %e, "could not serialise an error response");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(http::header::CONTENT_TYPE, "application/json")], body).into_response()
}
