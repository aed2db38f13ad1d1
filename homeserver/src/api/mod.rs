//! The HTTP layer: extract, call a service, map the result. One file per API area.

pub mod admin;
pub mod client;
mod ops;
pub mod ruma;
pub mod server;

use std::collections::HashMap;

use axum::Router;
use axum::response::IntoResponse;
use http::StatusCode;

use crate::accounts::Authed;
use crate::error::{Error, Result};
use crate::state::AppState;

/// The caller of an endpoint that needs an access token (header, or the deprecated query form).
pub(crate) async fn authed_from_parts(
    state: &AppState,
    headers: &http::HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Authed> {
    let from_header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let token =
        from_header.or_else(|| params.get("access_token").map(String::as_str)).ok_or_else(Error::missing_token)?;
    let authed = crate::accounts::authenticate(state, token).await?;
    crate::access_log::note_caller(&authed);
    Ok(authed)
}

/// A JSON body: `M_NOT_JSON` when it is not JSON, `M_BAD_JSON` when it has the wrong shape; an
/// empty body reads as `{}`.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<AppState> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<Self> {
        let limit = usize::try_from(state.config.limits.max_request_bytes).unwrap_or(usize::MAX);
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| Error::too_large("Request body is too large"))?;
        let bytes = if bytes.is_empty() { &b"{}"[..] } else { &bytes[..] };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|_| Error::not_json("Request body is not valid JSON"))?;
        serde_json::from_value(value).map(Self).map_err(|e| Error::bad_json(e.to_string()))
    }
}

/// The authenticated caller, for plain axum handlers (ruma handlers use `Ruma<T>`). As an
/// extractor it runs before the body is read, so a missing token is reported first.
pub struct Caller(pub Authed);

impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut http::request::Parts, state: &AppState) -> Result<Self> {
        let params: HashMap<String, String> = axum::extract::Query::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(params)| params)
            .unwrap_or_default();
        Ok(Self(authed_from_parts(state, &parts.headers, &params).await?))
    }
}

/// Path parameters for plain axum handlers, with undecodable ones answered as 400
/// `M_INVALID_PARAM` (a Matrix error, not axum's plain-text rejection).
pub struct PathParams<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<AppState> for PathParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut http::request::Parts, state: &AppState) -> Result<Self> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|e| Error::invalid_param(format!("Invalid path parameter: {}", e.body_text())))
    }
}

/// Which APIs a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Everything (the default single listener).
    All,
    /// The client-server API and media (when federation has its own listener).
    Client,
    /// The server-server API and keys.
    Federation,
}

/// The routes a listener answers; health and readiness are on every listener.
pub fn routes(surface: Surface) -> Router<AppState> {
    let mut router = ops::routes(Router::new());
    if surface != Surface::Federation {
        router = client::routes(router);
        router = admin::routes(router);
    }
    if surface != Surface::Client {
        router = server::routes(router);
    }
    router
        .fallback(|| async { Error::unrecognized(StatusCode::NOT_FOUND, "Unrecognized request").into_response() })
        .method_not_allowed_fallback(|| async {
            Error::unrecognized(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed for this endpoint").into_response()
        })
}
