//! Glue between axum and ruma: the `Ruma<T>` extractor (body limit, authentication, parsing into
//! ruma's request types), the response wrapper, and route registration from ruma's metadata so a
//! path is never typed by hand.

use std::future::Future;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use http::StatusCode;
use ruma::api::auth_scheme::{
    AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional, NoAccessToken, NoAuthentication,
};
use ruma::api::error::{DeserializationError, FromHttpRequestError};
use ruma::api::path_builder::PathBuilder;
use ruma::api::{IncomingRequest, IncomingRequestExt, Metadata, OutgoingResponse, OutgoingResponseExt};

use ruma::OwnedServerName;

use crate::accounts::Authed;
use crate::error::{Error, Result};
use crate::state::AppState;

/// How an endpoint authenticates its caller, derived from ruma's declared scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    OptionalToken,
    RequiredToken,
    /// A request from another server, signed with X-Matrix.
    ServerSignature,
}

pub trait AuthRequirement {
    const MODE: AuthMode;
}

impl AuthRequirement for NoAuthentication {
    const MODE: AuthMode = AuthMode::None;
}
impl AuthRequirement for NoAccessToken {
    const MODE: AuthMode = AuthMode::None;
}
impl AuthRequirement for AccessToken {
    const MODE: AuthMode = AuthMode::RequiredToken;
}
impl AuthRequirement for AccessTokenOptional {
    const MODE: AuthMode = AuthMode::OptionalToken;
}
// Application services are not supported yet: their tokens are checked like user tokens, so an
// appservice token is simply unknown.
impl AuthRequirement for AppserviceToken {
    const MODE: AuthMode = AuthMode::RequiredToken;
}
impl AuthRequirement for AppserviceTokenOptional {
    const MODE: AuthMode = AuthMode::OptionalToken;
}

impl AuthRequirement for ruma::api::federation::authentication::ServerSignatures {
    const MODE: AuthMode = AuthMode::ServerSignature;
}

/// A parsed, authenticated request.
pub struct Ruma<T> {
    pub body: T,
    /// The authenticated user, when the endpoint takes an access token and one was given.
    pub user: Option<Authed>,
    /// The server that signed the request, on federation endpoints.
    pub origin: Option<OwnedServerName>,
}

impl<T> Ruma<T> {
    /// The authenticated caller of an endpoint that requires an access token.
    pub fn authed(&self) -> Result<&Authed> {
        self.user.as_ref().ok_or_else(Error::missing_token)
    }

    /// The verified origin server of a federation request.
    pub fn origin(&self) -> Result<&OwnedServerName> {
        self.origin.as_ref().ok_or_else(|| Error::unauthorized("Missing X-Matrix authorization"))
    }
}

impl<T> FromRequest<AppState> for Ruma<T>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: AuthRequirement,
{
    type Rejection = Error;

    async fn from_request(request: axum::extract::Request, state: &AppState) -> Result<Self> {
        let (mut parts, body) = request.into_parts();
        let path_args: Vec<String> = match RawPathParams::from_request_parts(&mut parts, state).await {
            Ok(params) => params.iter().map(|(_, value)| value.to_owned()).collect(),
            Err(_) => Vec::new(),
        };

        let limit = usize::try_from(state.config.limits.max_request_bytes).unwrap_or(usize::MAX);
        let declared_length = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_length.is_some_and(|len| len > limit as u64) {
            return Err(request_too_large(limit));
        }
        let mut bytes = axum::body::to_bytes(body, limit).await.map_err(|_| request_too_large(limit))?;
        // Clients (matrix-nio among them) send no body at all where every field is optional;
        // read that as the empty JSON object, as other servers do.
        if bytes.is_empty() && parts.method != http::Method::GET && is_json_or_untyped(&parts.headers) {
            bytes = bytes::Bytes::from_static(b"{}");
        }

        let http_request = http::Request::from_parts(parts, &bytes[..]);
        let (user, origin) = if <T::Authentication as AuthRequirement>::MODE == AuthMode::ServerSignature {
            (None, Some(authenticate_server(&http_request, state).await?))
        } else {
            (authenticate::<T>(&http_request, state).await?, None)
        };
        // Routes registered without a trailing empty segment (see `RumaRouter`) lack its argument.
        let mut path_refs: Vec<&str> = path_args.iter().map(String::as_str).collect();
        let expected = T::_path_parameters().len();
        while path_refs.len() < expected {
            path_refs.push("");
        }
        // Some of ruma's deserializers panic on malformed input (e.g. a login body without
        // `type`); a client's mistake must still be a 400, not a 500.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            T::try_from_http_request(http_request, &path_refs)
        }));
        let body = match parsed {
            Ok(result) => result.map_err(|e| parse_error(e, &bytes))?,
            Err(_) => {
                tracing::warn!("request parsing panicked; answered as M_BAD_JSON");
                return Err(if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() {
                    Error::bad_json("Malformed request")
                } else {
                    Error::not_json("Request body is not valid JSON")
                });
            }
        };
        Ok(Self { body, user, origin })
    }
}

/// Checks the X-Matrix signature of a request from another server and returns that server.
/// Plain axum handlers (streamed federation media) call it with the request's parts.
pub(crate) async fn authenticate_server(request: &http::Request<&[u8]>, state: &AppState) -> Result<OwnedServerName> {
    if !state.config.federation.enabled {
        return Err(Error::unrecognized(StatusCode::NOT_FOUND, "Federation is disabled on this server"));
    }
    let signer = federation::xmatrix::signer(request.headers()).map_err(|e| Error::unauthorized(e.to_string()))?;
    if signer.origin == state.server_name {
        return Err(Error::unauthorized("A request cannot come from this server itself"));
    }
    let key = state
        .keyring
        .key(state, signer.origin.as_str(), signer.key_id.as_str(), state.now_ms())
        .await?
        .ok_or_else(|| Error::unauthorized(format!("Unknown key {} of {}", signer.key_id, signer.origin)))?;
    signer.verify(request, &state.server_name, &key).map_err(|e| Error::unauthorized(e.to_string()))?;
    Ok(signer.origin)
}

async fn authenticate<T>(request: &http::Request<&[u8]>, state: &AppState) -> Result<Option<Authed>>
where
    T: Metadata,
    T::Authentication: AuthRequirement,
{
    let mode = <T::Authentication as AuthRequirement>::MODE;
    if mode == AuthMode::None {
        return Ok(None);
    }
    let token = ruma::api::auth_scheme::extract_bearer_or_query_token(request).map_err(|_| Error::missing_token())?;
    match (token, mode) {
        (Some(token), _) => {
            let authed = crate::accounts::authenticate(state, &token).await?;
            crate::access_log::note_caller(&authed);
            Ok(Some(authed))
        }
        (None, AuthMode::RequiredToken) => Err(Error::missing_token()),
        (None, _) => Ok(None),
    }
}

fn is_json_or_untyped(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|content_type| content_type.starts_with("application/json"))
}

fn request_too_large(limit: usize) -> Error {
    Error::too_large(format!("Request body is larger than the limit of {limit} bytes"))
}

/// Maps ruma's parse failures to the spec's error codes: syntax errors are `M_NOT_JSON`, JSON of
/// the wrong shape is `M_BAD_JSON`, bad path or query values are `M_INVALID_PARAM`.
fn parse_error(error: FromHttpRequestError, body: &[u8]) -> Error {
    let body_is_json = body.is_empty() || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
    if !body_is_json {
        return Error::not_json("Request body is not valid JSON");
    }
    match error {
        FromHttpRequestError::Deserialization(DeserializationError::Json(e)) => Error::bad_json(e.to_string()),
        FromHttpRequestError::Deserialization(DeserializationError::Query(e)) => {
            Error::invalid_param(format!("Invalid query parameter: {e}"))
        }
        FromHttpRequestError::Deserialization(DeserializationError::Ident(e)) => {
            Error::invalid_param(format!("Invalid identifier: {e}"))
        }
        FromHttpRequestError::MethodMismatch { .. } => {
            Error::unrecognized(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        }
        other => Error::bad_json(other.to_string()),
    }
}

/// A ruma response, serialised by ruma.
pub struct RumaResponse<T>(pub T);

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<Vec<u8>>() {
            Ok(response) => response.map(axum::body::Body::from),
            Err(e) => Error::internal(format!("could not serialise a response: {e}")).into_response(),
        }
    }
}

/// Registers handlers under every path (all spec versions) their ruma request type declares.
pub trait RumaRouter {
    fn ruma<Req, F, Fut>(self, handler: F) -> Self
    where
        Req: IncomingRequest + Send + 'static,
        Req::Authentication: AuthRequirement,
        Req::OutgoingResponse: Send,
        F: Fn(AppState, Ruma<Req>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Req::OutgoingResponse>> + Send + 'static;
}

impl RumaRouter for Router<AppState> {
    fn ruma<Req, F, Fut>(mut self, handler: F) -> Self
    where
        Req: IncomingRequest + Send + 'static,
        Req::Authentication: AuthRequirement,
        Req::OutgoingResponse: Send,
        F: Fn(AppState, Ruma<Req>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Req::OutgoingResponse>> + Send + 'static,
    {
        let filter = MethodFilter::try_from(Req::METHOD).expect("ruma endpoints use standard methods");
        let endpoint = move |State(state): State<AppState>, request: Ruma<Req>| {
            let handler = handler.clone();
            async move { handler(state, request).await.map(RumaResponse) }
        };
        for path in Req::PATH_BUILDER.all_paths() {
            self = self.route(path, on(filter, endpoint.clone()));
            // axum never matches an empty segment, so `…/state/{type}/` (empty state key) needs
            // routes of its own; the extractor pads the missing argument with "".
            if let Some(base) = path.strip_suffix("/{state_key}") {
                self = self.route(base, on(filter, endpoint.clone()));
                self = self.route(&format!("{base}/"), on(filter, endpoint.clone()));
            }
        }
        self
    }
}
