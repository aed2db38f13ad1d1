//! Requests to URLs that someone else chose (URL previews, a remote server's media `Location`):
//! they must not reach this server's own network. Every address a host resolves to, and every
//! literal address, is checked against the non-public ranges (unless allow-listed), again at
//! each redirect, which is followed by hand.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("only http and https URLs can be fetched")]
    BadUrl,
    #[error("the address is not public")]
    Refused,
    #[error("too many redirects")]
    TooManyRedirects,
    #[error("timed out")]
    Timeout,
    #[error("the request failed: {0}")]
    Failed(String),
}

/// The address refused by the resolver, found again in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("refused to connect to a non-public address")]
struct RefusedAddress;

pub struct SafeHttp {
    client: reqwest::Client,
    allow: Arc<Vec<IpNet>>,
}

impl SafeHttp {
    /// `allow`: ranges reachable even though they are not public (tests, a trusted proxy).
    pub fn new(allow: Vec<IpNet>) -> Result<Self, FetchError> {
        let allow = Arc::new(allow);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { allow: allow.clone() }))
            // A proxy would resolve names itself, out of the guard's sight.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("Myelin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        Ok(Self { client, allow })
    }

    /// GETs `url`, following redirects, within `timeout` until the response headers arrive (the
    /// caller bounds reading the body). Returns the final response, whatever its status.
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<reqwest::Response, FetchError> {
        let mut url = Url::parse(url).map_err(|_| FetchError::BadUrl)?;
        let deadline = tokio::time::Instant::now() + timeout;
        for _ in 0..=MAX_REDIRECTS {
            self.check_url(&url)?;
            let request = self.client.get(url.clone()).send();
            let response = match tokio::time::timeout_at(deadline, request).await {
                Err(_) => return Err(FetchError::Timeout),
                Ok(Err(e)) => return Err(request_error(&e)),
                Ok(Ok(response)) => response,
            };
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let location = response.headers().get(http::header::LOCATION).and_then(|v| v.to_str().ok());
            let Some(next) = location.and_then(|l| url.join(l).ok()) else { return Ok(response) };
            url = next;
        }
        Err(FetchError::TooManyRedirects)
    }

    /// Literal addresses never reach the resolver, so they are checked here.
    fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::BadUrl);
        }
        let host = url.host_str().ok_or(FetchError::BadUrl)?;
        let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        match literal.parse::<IpAddr>() {
            Ok(ip) if !is_allowed(ip, &self.allow) => Err(FetchError::Refused),
            _ => Ok(()),
        }
    }
}

fn request_error(e: &reqwest::Error) -> FetchError {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.is::<RefusedAddress>() {
            return FetchError::Refused;
        }
        source = cause.source();
    }
    if e.is_timeout() { FetchError::Timeout } else { FetchError::Failed(e.to_string()) }
}

struct GuardedResolver {
    allow: Arc<Vec<IpNet>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            // One non-public answer refuses the name: mixing answers is how rebinding tricks work.
            if addrs.is_empty() || addrs.iter().any(|addr| !is_allowed(addr.ip(), &allow)) {
                return Err(Box::new(RefusedAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

pub fn is_allowed(ip: IpAddr, allow: &[IpNet]) -> bool {
    is_public(ip) || allow.iter().any(|net| net.contains(&ip))
}

/// Whether an address is on the public internet: not loopback, private, link-local, shared
/// (CGNAT), multicast, broadcast, unspecified, documentation or otherwise reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => {
            if let Some(v4) = ip.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = ip.segments()[0];
            !(ip.is_unspecified()
                || ip.is_loopback()
                || ip.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
                || (first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64, could reach anything
                || ip.segments()[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

/// Parses the allow-list of the configuration: addresses or CIDR ranges.
pub fn parse_allowlist(entries: &[String]) -> Result<Vec<IpNet>, String> {
    entries
        .iter()
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{entry:?} is not an IP address or CIDR range"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn non_public_ranges_are_refused() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip(refused)), "{refused}");
        }
        for public in ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111", "::ffff:1.1.1.1"] {
            assert!(is_public(ip(public)), "{public}");
        }
        assert!(!is_public(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }

    #[test]
    fn the_allowlist_opens_ranges() {
        let allow = parse_allowlist(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap();
        assert!(is_allowed(ip("127.0.0.1"), &allow));
        assert!(is_allowed(ip("10.200.0.1"), &allow));
        assert!(!is_allowed(ip("127.0.0.2"), &allow));
        assert!(parse_allowlist(&["localhost".into()]).is_err());
    }

    #[tokio::test]
    async fn literal_and_resolved_loopback_urls_are_refused() {
        let http = SafeHttp::new(Vec::new()).unwrap();
        for url in ["http://127.0.0.1:1/", "http://[::1]:1/", "http://localhost:1/"] {
            let result = http.get(url, Duration::from_secs(5)).await;
            assert!(matches!(result, Err(FetchError::Refused)), "{url}: {result:?}");
        }
        assert!(matches!(http.get("file:///etc/passwd", Duration::from_secs(1)).await, Err(FetchError::BadUrl)));
    }
}
