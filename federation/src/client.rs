//! The outbound federation HTTP client: resolves the destination, signs the request with
//! X-Matrix and parses the answer into ruma's response type.
//!
//! A remote server's error is returned as [`FederationError::Remote`] for the caller to map;
//! it is never meant to reach a client as it is.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ruma::api::auth_scheme::NoAuthentication;
use ruma::api::federation::authentication::{ServerSignatures, XMatrixSigningInput};
use ruma::api::path_builder::SinglePath;
use ruma::api::{IncomingResponseExt, OutgoingRequest, OutgoingRequestExt};
use ruma::{OwnedServerName, ServerName};

use crate::ServerSigningKey;
use crate::discovery::{DiscoveryIo, Resolved, SrvTarget};

/// How long a resolved destination is reused.
const RESOLUTION_TTL: Duration = Duration::from_secs(3600);
/// The largest response body read (a `send_join` answer of a big room is several MiB).
const MAX_RESPONSE_BYTES: usize = 100 * 1024 * 1024;
/// The largest well-known file read.
const MAX_WELL_KNOWN_BYTES: usize = 64 * 1024;
/// The largest error body read from a streamed request.
const MAX_ERROR_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("cannot resolve {0}")]
    Discovery(String),
    #[error("{0} is unreachable: {1}")]
    Unreachable(String, String),
    #[error("{0} did not answer in time")]
    Timeout(String),
    #[error("{server} answered {status} {errcode}: {message}")]
    Remote { server: String, status: u16, errcode: String, message: String },
    #[error("{0} sent an invalid response: {1}")]
    BadResponse(String, String),
    #[error("could not build the request: {0}")]
    Build(String),
}

impl FederationError {
    /// True when the server could not be reached at all (as opposed to answering with an error).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Discovery(_) | Self::Unreachable(..) | Self::Timeout(_))
    }
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Check the destination's TLS certificate (off only for test setups).
    pub verify_tls: bool,
    pub request_timeout: Duration,
}

/// Sends signed requests to other homeservers.
pub struct FederationClient {
    origin: OwnedServerName,
    http: reqwest::Client,
    lookups: HttpLookups,
    resolved: Mutex<HashMap<OwnedServerName, (Resolved, Instant)>>,
    /// Hosts an SRV record sent elsewhere: connect there, still verify the host's certificate.
    srv_targets: SrvTargets,
}

impl FederationClient {
    pub fn new(origin: OwnedServerName, options: &ClientOptions) -> Result<Self, FederationError> {
        let builder = |redirects: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .danger_accept_invalid_certs(!options.verify_tls)
                .timeout(options.request_timeout)
                .connect_timeout(Duration::from_secs(10))
                .redirect(redirects)
                .user_agent(concat!("Myelin/", env!("CARGO_PKG_VERSION")))
        };
        let built =
            |builder: reqwest::ClientBuilder| builder.build().map_err(|e| FederationError::Build(e.to_string()));
        let srv_targets = SrvTargets::default();
        // Federation endpoints never redirect.
        let http =
            built(builder(reqwest::redirect::Policy::none()).dns_resolver(std::sync::Arc::new(srv_targets.clone())))?;
        // Without a usable system DNS configuration the SRV steps are skipped.
        let dns = hickory_resolver::TokioResolver::builder_tokio().ok().and_then(|builder| builder.build().ok());
        Ok(Self {
            origin,
            http,
            // The well-known file may redirect.
            lookups: HttpLookups { http: built(builder(reqwest::redirect::Policy::limited(5)))?, dns },
            resolved: Mutex::new(HashMap::new()),
            srv_targets,
        })
    }

    pub fn origin(&self) -> &ServerName {
        &self.origin
    }

    /// Sends a request signed with `key`.
    pub async fn send<R>(
        &self,
        destination: &ServerName,
        key: &ServerSigningKey,
        request: R,
    ) -> Result<R::IncomingResponse, FederationError>
    where
        R: OutgoingRequest<Authentication = ServerSignatures, PathBuilder = SinglePath>,
    {
        let target = self.resolve(destination).await?;
        let input = XMatrixSigningInput::new(self.origin.clone(), destination.to_owned(), key.key_pair());
        let http_request = request
            .try_into_http_request::<Vec<u8>>(&target.base_url(), input, ())
            .map_err(|e| FederationError::Build(e.to_string()))?;
        self.execute::<R>(destination, &target, http_request).await
    }

    /// Sends a request that needs no signature (fetching a server's keys).
    pub async fn send_unsigned<R>(
        &self,
        destination: &ServerName,
        request: R,
    ) -> Result<R::IncomingResponse, FederationError>
    where
        R: OutgoingRequest<Authentication = NoAuthentication, PathBuilder = SinglePath>,
    {
        let target = self.resolve(destination).await?;
        let http_request = request
            .try_into_http_request::<Vec<u8>>(&target.base_url(), (), ())
            .map_err(|e| FederationError::Build(e.to_string()))?;
        self.execute::<R>(destination, &target, http_request).await
    }

    /// Sends a signed request and returns the response unread, for bodies too large to buffer
    /// (media), within `timeout` for the whole exchange. An error status is read (bounded) and
    /// returned as [`FederationError::Remote`].
    pub async fn send_streamed<R>(
        &self,
        destination: &ServerName,
        key: &ServerSigningKey,
        request: R,
        timeout: Duration,
    ) -> Result<StreamedResponse, FederationError>
    where
        R: OutgoingRequest<Authentication = ServerSignatures, PathBuilder = SinglePath>,
    {
        let target = self.resolve(destination).await?;
        let input = XMatrixSigningInput::new(self.origin.clone(), destination.to_owned(), key.key_pair());
        let http_request = request
            .try_into_http_request::<Vec<u8>>(&target.base_url(), input, ())
            .map_err(|e| FederationError::Build(e.to_string()))?;
        let server = destination.to_string();
        let mut request = self.prepare(&target, http_request)?;
        *request.timeout_mut() = Some(timeout);
        let response = self.http.execute(request).await.map_err(|e| transport_error(&server, e))?;
        let status = response.status().as_u16();
        if status >= 400 {
            let body = read_limited(response, MAX_ERROR_BYTES).await.map_err(|e| transport_error(&server, e))?;
            return Err(remote_error(&server, status, &body));
        }
        Ok(StreamedResponse { server, response })
    }

    async fn resolve(&self, destination: &ServerName) -> Result<Resolved, FederationError> {
        {
            let cache = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((resolved, at)) = cache.get(destination)
                && at.elapsed() < RESOLUTION_TTL
            {
                return Ok(resolved.clone());
            }
        }
        let resolved = crate::discovery::resolve(destination.as_str(), &self.lookups)
            .await
            .map_err(|e| FederationError::Discovery(e.to_string()))?;
        if let Some(target) = &resolved.connect_to {
            self.srv_targets.set(&resolved.host, target.clone());
        }
        let mut cache = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(destination.to_owned(), (resolved.clone(), Instant::now()));
        Ok(resolved)
    }

    async fn execute<R: OutgoingRequest>(
        &self,
        destination: &ServerName,
        target: &Resolved,
        http_request: http::Request<Vec<u8>>,
    ) -> Result<R::IncomingResponse, FederationError> {
        let server = destination.to_string();
        let request = self.prepare(target, http_request)?;
        let response = self.http.execute(request).await.map_err(|e| transport_error(&server, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_limited(response, MAX_RESPONSE_BYTES).await.map_err(|e| transport_error(&server, e))?;
        if status.as_u16() >= 400 {
            return Err(remote_error(&server, status.as_u16(), &body));
        }
        let mut builder = http::Response::builder().status(status);
        if let Some(map) = builder.headers_mut() {
            *map = headers;
        }
        let http_response =
            builder.body(&body[..]).map_err(|e| FederationError::BadResponse(server.clone(), e.to_string()))?;
        R::IncomingResponse::try_from_http_response(http_response)
            .map_err(|e| FederationError::BadResponse(server, e.to_string()))
    }
}

impl FederationClient {
    /// The request to send to the resolved target, with its `Host` header.
    fn prepare(
        &self,
        target: &Resolved,
        mut http_request: http::Request<Vec<u8>>,
    ) -> Result<reqwest::Request, FederationError> {
        let host =
            http::HeaderValue::from_str(&target.host_header).map_err(|e| FederationError::Build(e.to_string()))?;
        http_request.headers_mut().insert(http::header::HOST, host);
        reqwest::Request::try_from(http_request).map_err(|e| FederationError::Build(e.to_string()))
    }
}

/// A successful response whose body the caller reads chunk by chunk.
pub struct StreamedResponse {
    server: String,
    response: reqwest::Response,
}

impl StreamedResponse {
    pub fn headers(&self) -> &http::HeaderMap {
        self.response.headers()
    }

    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, FederationError> {
        self.response.chunk().await.map_err(|e| transport_error(&self.server, e))
    }
}

fn transport_error(server: &str, e: reqwest::Error) -> FederationError {
    if e.is_timeout() {
        FederationError::Timeout(server.to_owned())
    } else {
        // The error's source chain says why (refused, TLS, DNS); keep it for the logs.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            reason = format!("{reason}: {cause}");
            source = cause.source();
        }
        FederationError::Unreachable(server.to_owned(), reason)
    }
}

fn remote_error(server: &str, status: u16, body: &[u8]) -> FederationError {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |field: &str| json.get(field).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    FederationError::Remote { server: server.to_owned(), status, errcode: text("errcode"), message: text("error") }
}

/// Reads a response body, refusing more than `limit` bytes.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            // Stop reading; what came so far is not a complete answer.
            body.clear();
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Discovery over the network: well-known files over HTTPS and SRV records through the
/// system's DNS configuration.
struct HttpLookups {
    http: reqwest::Client,
    /// `None` when the system has no usable DNS configuration: SRV steps are then skipped.
    dns: Option<hickory_resolver::TokioResolver>,
}

impl DiscoveryIo for HttpLookups {
    async fn well_known(&self, hostname: &str) -> Option<String> {
        let url = format!("https://{hostname}/.well-known/matrix/server");
        let response = self.http.get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = read_limited(response, MAX_WELL_KNOWN_BYTES).await.ok()?;
        let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
        json.get("m.server")?.as_str().map(str::to_owned)
    }

    async fn srv(&self, name: &str) -> Option<SrvTarget> {
        use hickory_resolver::proto::rr::RData;
        let lookup = self.dns.as_ref()?.srv_lookup(name).await.ok()?;
        // Lowest priority first, then the heaviest weight (a deterministic reading of RFC 2782).
        let best = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(srv.clone()),
                _ => None,
            })
            .min_by_key(|srv| (srv.priority, std::cmp::Reverse(srv.weight)))?;
        let host = best.target.to_utf8().trim_end_matches('.').to_owned();
        // A target of "." means the service is decidedly not available there.
        (!host.is_empty()).then_some(SrvTarget { host, port: best.port })
    }
}

/// The HTTP client's name resolution: the system's, except for hosts an SRV record pointed
/// elsewhere, which resolve to their target.
#[derive(Clone, Default)]
struct SrvTargets(std::sync::Arc<Mutex<HashMap<String, (String, u16)>>>);

impl SrvTargets {
    fn set(&self, host: &str, target: (String, u16)) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(host.to_owned(), target);
    }
}

impl reqwest::dns::Resolve for SrvTargets {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let target = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(name.as_str()).cloned();
        let (host, port) = target.unwrap_or_else(|| (name.as_str().to_owned(), 0));
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use reqwest::dns::Resolve;

    use super::*;

    #[tokio::test]
    async fn srv_targets_send_a_host_to_its_target_and_others_to_the_system() {
        let targets = SrvTargets::default();
        targets.set("matrix.example.test", ("127.0.0.2".into(), 8449));
        let addrs: Vec<_> =
            targets.resolve(reqwest::dns::Name::from_str("matrix.example.test").unwrap()).await.unwrap().collect();
        assert_eq!(addrs, ["127.0.0.2:8449".parse().unwrap()]);
        let addrs: Vec<_> =
            targets.resolve(reqwest::dns::Name::from_str("localhost").unwrap()).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty(), "{addrs:?}");
    }
}
