//! Myelin, a Matrix homeserver.
//!
//! `app(state)` builds the whole HTTP service; `main.rs` only parses the command line, loads the
//! configuration and serves it. Tests build the same router in-process.

pub mod access_log;
pub mod account_data;
pub mod accounts;
pub mod admin_tasks;
pub mod api;
pub mod at_rest;
pub mod audit;
pub mod config;
pub mod e2ee;
pub mod error;
pub mod federation_sender;
pub mod key_rotation;
pub mod media;
pub mod metrics;
pub mod notifications;
pub mod presence;
pub mod push_rules;
pub mod receipts;
pub mod rooms;
pub mod safe_http;
pub mod search;
pub mod server;
pub mod server_keys;
pub mod signing_key;
pub mod state;
pub mod storage;
pub mod sync;
pub mod tls;
pub mod typing;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::MatchedPath;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, Method, Request, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The complete HTTP service for `state`.
pub fn app(state: AppState) -> Router {
    app_for(state, api::Surface::All)
}

/// The HTTP service of one listener.
pub fn app_for(state: AppState, surface: api::Surface) -> Router {
    api::routes(surface)
        .layer(axum::middleware::from_fn_with_state(state.clone(), access_log::record))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .with_state(state)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(cors())
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO).latency_unit(tower_http::LatencyUnit::Micros)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, SequentialRequestId::default()))
}

/// The span every request's logs carry. It names the route template, never the raw URI: query
/// strings can hold access tokens.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let route = request.extensions().get::<MatchedPath>().map_or("<unmatched>", MatchedPath::as_str);
    let request_id =
        request.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or("-");
    tracing::info_span!("request", method = %request.method(), route, request_id)
}

/// Request IDs: a per-process random prefix and a counter, cheap and unique in the logs.
#[derive(Clone)]
struct SequentialRequestId {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl Default for SequentialRequestId {
    fn default() -> Self {
        Self { prefix: accounts::tokens::new_opaque_id(6).into(), next: Arc::new(AtomicU64::new(1)) }
    }
}

impl MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix)).ok().map(RequestId::new)
    }
}

/// CORS as the spec asks, so browser clients such as Element Web work from any origin.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("x-requested-with")])
        .max_age(Duration::from_secs(86_400))
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    error::Error::internal("a request handler panicked").into_response()
}
