//! Server discovery: where to connect for a server name, per the spec's resolution steps
//! (IP literals, explicit ports, `/.well-known/matrix/server` delegation, SRV records, 8448).
//!
//! The steps are pure; looking up well-known files and SRV records is behind [`DiscoveryIo`] so
//! the rules can be tested with a fake network.

use std::net::IpAddr;

/// The default federation port.
pub const DEFAULT_PORT: u16 = 8448;

/// Where to send requests for a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The host to connect to and whose TLS certificate must be valid (also the SNI name).
    pub host: String,
    pub port: u16,
    /// The `Host` header to send.
    pub host_header: String,
    /// Set when an SRV record sent us to another machine than `host`: connect there, but still
    /// check the certificate for `host`.
    pub connect_to: Option<(String, u16)>,
}

impl Resolved {
    /// `https://host:port`, with IPv6 literals bracketed.
    pub fn base_url(&self) -> String {
        format!("https://{}:{}", bracketed(&self.host), self.port)
    }
}

/// A looked-up SRV record target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    pub host: String,
    pub port: u16,
}

/// The network lookups discovery needs.
pub trait DiscoveryIo {
    /// The `m.server` value of `https://<hostname>/.well-known/matrix/server`, if it answers with
    /// one.
    fn well_known(&self, hostname: &str) -> impl Future<Output = Option<String>> + Send;
    /// The best target of the SRV record `name` (e.g. `_matrix-fed._tcp.example.org`), if any.
    fn srv(&self, name: &str) -> impl Future<Output = Option<SrvTarget>> + Send;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid server name `{0}`")]
pub struct InvalidServerName(pub String);

/// Splits a server name into its host and optional port (IPv6 literals keep no brackets).
pub fn split_server_name(name: &str) -> Result<(String, Option<u16>), InvalidServerName> {
    let invalid = || InvalidServerName(name.to_owned());
    if let Some(rest) = name.strip_prefix('[') {
        let (address, after) = rest.split_once(']').ok_or_else(invalid)?;
        address.parse::<std::net::Ipv6Addr>().map_err(|_| invalid())?;
        let port = match after {
            "" => None,
            port => Some(port.strip_prefix(':').ok_or_else(invalid)?.parse().map_err(|_| invalid())?),
        };
        return Ok((address.to_owned(), port));
    }
    let (host, port) = match name.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse::<u16>().map_err(|_| invalid())?)),
        None => (name, None),
    };
    let valid_host = !host.is_empty()
        && host.len() <= 255
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    if !valid_host {
        return Err(invalid());
    }
    Ok((host.to_owned(), port))
}

fn bracketed(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_owned() }
}

fn is_ip_literal(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok()
}

fn direct(host: &str, port: u16, host_header: String) -> Resolved {
    Resolved { host: host.to_owned(), port, host_header, connect_to: None }
}

/// Resolves `server_name` by the spec's steps.
pub async fn resolve(server_name: &str, io: &impl DiscoveryIo) -> Result<Resolved, InvalidServerName> {
    let (host, port) = split_server_name(server_name)?;
    // 1 and 2: an IP literal, or an explicit port, is used as it is.
    if is_ip_literal(&host) || port.is_some() {
        return Ok(direct(&host, port.unwrap_or(DEFAULT_PORT), server_name.to_owned()));
    }
    // 3: delegation through the well-known file.
    if let Some(delegated) = io.well_known(&host).await
        && let Ok((delegated_host, delegated_port)) = split_server_name(&delegated)
    {
        if is_ip_literal(&delegated_host) || delegated_port.is_some() {
            return Ok(direct(&delegated_host, delegated_port.unwrap_or(DEFAULT_PORT), delegated));
        }
        return Ok(by_srv(&delegated_host, io).await);
    }
    // 4 to 6: SRV records of the server name itself, then port 8448.
    Ok(by_srv(&host, io).await)
}

/// `_matrix-fed._tcp`, then the deprecated `_matrix._tcp`, then port 8448 on the host itself.
async fn by_srv(hostname: &str, io: &impl DiscoveryIo) -> Resolved {
    for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
        if let Some(target) = io.srv(&format!("{service}.{hostname}")).await {
            let connect_to = (target.host != hostname).then(|| (target.host.clone(), target.port));
            return Resolved {
                host: hostname.to_owned(),
                port: target.port,
                host_header: hostname.to_owned(),
                connect_to,
            };
        }
    }
    direct(hostname, DEFAULT_PORT, hostname.to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct FakeNetwork {
        well_known: HashMap<&'static str, &'static str>,
        srv: HashMap<&'static str, (&'static str, u16)>,
    }

    impl DiscoveryIo for FakeNetwork {
        async fn well_known(&self, hostname: &str) -> Option<String> {
            self.well_known.get(hostname).map(|s| (*s).to_owned())
        }
        async fn srv(&self, name: &str) -> Option<SrvTarget> {
            self.srv.get(name).map(|(host, port)| SrvTarget { host: (*host).to_owned(), port: *port })
        }
    }

    async fn resolved(name: &str, network: &FakeNetwork) -> (String, u16, String, Option<(String, u16)>) {
        let r = resolve(name, network).await.unwrap();
        (r.host, r.port, r.host_header, r.connect_to)
    }

    #[tokio::test]
    async fn ip_literals_and_explicit_ports_skip_every_lookup() {
        let mut network = FakeNetwork::default();
        // Lookups that must not be consulted.
        network.well_known.insert("example.org", "delegated.example.org");
        network.srv.insert("_matrix-fed._tcp.example.org", ("srv.example.org", 443));

        assert_eq!(resolved("127.0.0.1", &network).await, ("127.0.0.1".into(), 8448, "127.0.0.1".into(), None));
        assert_eq!(
            resolved("127.0.0.1:8008", &network).await,
            ("127.0.0.1".into(), 8008, "127.0.0.1:8008".into(), None)
        );
        assert_eq!(resolved("[::1]:9000", &network).await, ("::1".into(), 9000, "[::1]:9000".into(), None));
        assert_eq!(
            resolved("example.org:1234", &network).await,
            ("example.org".into(), 1234, "example.org:1234".into(), None)
        );
        assert_eq!(resolve("[::1]:9000", &network).await.unwrap().base_url(), "https://[::1]:9000");
    }

    #[tokio::test]
    async fn well_known_delegation_follows_the_delegated_name() {
        let mut network = FakeNetwork::default();
        network.well_known.insert("a.org", "matrix.a.org:443");
        network.well_known.insert("b.org", "10.0.0.1");
        network.well_known.insert("c.org", "matrix.c.org");
        network.srv.insert("_matrix-fed._tcp.matrix.c.org", ("host.c.net", 8449));
        network.well_known.insert("d.org", "matrix.d.org");

        assert_eq!(resolved("a.org", &network).await, ("matrix.a.org".into(), 443, "matrix.a.org:443".into(), None));
        assert_eq!(resolved("b.org", &network).await, ("10.0.0.1".into(), 8448, "10.0.0.1".into(), None));
        // SRV of the delegated name: connect to the target, certificate and Host of the delegate.
        assert_eq!(
            resolved("c.org", &network).await,
            ("matrix.c.org".into(), 8449, "matrix.c.org".into(), Some(("host.c.net".into(), 8449)))
        );
        assert_eq!(resolved("d.org", &network).await, ("matrix.d.org".into(), 8448, "matrix.d.org".into(), None));
    }

    #[tokio::test]
    async fn without_delegation_srv_records_then_8448() {
        let mut network = FakeNetwork::default();
        network.srv.insert("_matrix-fed._tcp.e.org", ("fed.e.org", 443));
        network.srv.insert("_matrix._tcp.f.org", ("old.f.org", 8000));

        assert_eq!(
            resolved("e.org", &network).await,
            ("e.org".into(), 443, "e.org".into(), Some(("fed.e.org".into(), 443)))
        );
        assert_eq!(
            resolved("f.org", &network).await,
            ("f.org".into(), 8000, "f.org".into(), Some(("old.f.org".into(), 8000)))
        );
        assert_eq!(resolved("g.org", &network).await, ("g.org".into(), 8448, "g.org".into(), None));
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in ["", "a.org:", "a.org:99999", "[::1", "[zz]:1", "a b.org", "a.org:12:34"] {
            assert!(split_server_name(bad).is_err(), "{bad} should be refused");
        }
    }
}
