//! The X-Matrix `Authorization` scheme: every federation request is signed by its origin
//! server over its method, URI, origin, destination and JSON body.
//!
//! Building and parsing the header is ruma's; this module fixes the policy around it: the
//! destination must be us, and the signature must verify with one of the origin's keys.

use std::collections::BTreeMap;

use ruma::api::federation::authentication::XMatrix;
use ruma::serde::Base64;
use ruma::{OwnedServerName, OwnedServerSigningKeyId, ServerName};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XMatrixError {
    #[error("no X-Matrix Authorization header")]
    Missing,
    #[error("malformed X-Matrix header: {0}")]
    Malformed(String),
    #[error("the request is addressed to {0}, not to this server")]
    WrongDestination(String),
    #[error("the origin's key {0} is unknown")]
    UnknownKey(String),
    #[error("the request signature is not valid")]
    BadSignature,
}

/// Who signed a request, before the signature is checked.
#[derive(Debug, Clone)]
pub struct RequestSigner {
    pub origin: OwnedServerName,
    pub key_id: OwnedServerSigningKeyId,
    header: XMatrix,
}

/// Reads the X-Matrix header of an incoming request.
pub fn signer(headers: &http::HeaderMap) -> Result<RequestSigner, XMatrixError> {
    let value = headers.get(http::header::AUTHORIZATION).ok_or(XMatrixError::Missing)?;
    let header = XMatrix::try_from(value).map_err(|e| XMatrixError::Malformed(e.to_string()))?;
    Ok(RequestSigner { origin: header.origin.clone(), key_id: header.key.clone(), header })
}

impl RequestSigner {
    /// Checks the request was signed by `origin` with `public_key_base64` (the key named in the
    /// header) and addressed to `us`.
    pub fn verify<T: AsRef<[u8]>>(
        &self,
        request: &http::Request<T>,
        us: &ServerName,
        public_key_base64: &str,
    ) -> Result<(), XMatrixError> {
        if let Some(destination) = &self.header.destination
            && destination != us
        {
            return Err(XMatrixError::WrongDestination(destination.to_string()));
        }
        let key = Base64::parse(public_key_base64).map_err(|_| XMatrixError::UnknownKey(self.key_id.to_string()))?;
        let keys = BTreeMap::from([(self.origin.to_string(), BTreeMap::from([(self.key_id.to_string(), key)]))]);
        self.header.verify_http_request(request, us, &keys).map_err(|_| XMatrixError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use ruma::api::auth_scheme::AuthScheme;
    use ruma::api::federation::authentication::{ServerSignatures, XMatrixSigningInput};
    use ruma::server_name;

    use super::*;
    use crate::ServerSigningKey;

    fn signed_request(key: &ServerSigningKey, uri: &str, body: &str, destination: &str) -> http::Request<Vec<u8>> {
        let mut request = http::Request::builder().method("PUT").uri(uri).body(body.as_bytes().to_vec()).unwrap();
        let input = XMatrixSigningInput::new(
            server_name!("origin.test").to_owned(),
            OwnedServerName::try_from(destination).unwrap(),
            key.key_pair(),
        );
        ServerSignatures::add_authentication(&mut request, input).unwrap();
        request
    }

    #[test]
    fn a_signed_request_verifies() {
        let key = ServerSigningKey::generate();
        let request = signed_request(&key, "/_matrix/federation/v1/send/1", r#"{"pdus":[]}"#, "us.test");
        let signer = signer(request.headers()).unwrap();
        assert_eq!(signer.origin.as_str(), "origin.test");
        assert_eq!(signer.key_id.as_str(), key.key_id());
        signer.verify(&request, server_name!("us.test"), &key.public_key_base64()).unwrap();
    }

    #[test]
    fn a_forged_or_altered_request_is_refused() {
        let key = ServerSigningKey::generate();
        let request = signed_request(&key, "/_matrix/federation/v1/send/1", r#"{"pdus":[]}"#, "us.test");
        let header = request.headers().clone();

        // Another key than the origin's.
        let other = ServerSigningKey::generate();
        let signer = signer(&header).unwrap();
        assert_eq!(
            signer.verify(&request, server_name!("us.test"), &other.public_key_base64()),
            Err(XMatrixError::BadSignature)
        );

        // The same header replayed on another URI or with another body.
        let mut moved = http::Request::builder()
            .method("PUT")
            .uri("/_matrix/federation/v1/send/2")
            .body(br#"{"pdus":[]}"#.to_vec())
            .unwrap();
        *moved.headers_mut() = header.clone();
        assert_eq!(
            signer.verify(&moved, server_name!("us.test"), &key.public_key_base64()),
            Err(XMatrixError::BadSignature)
        );
        let mut altered = http::Request::builder()
            .method("PUT")
            .uri("/_matrix/federation/v1/send/1")
            .body(br#"{"pdus":[{}]}"#.to_vec())
            .unwrap();
        *altered.headers_mut() = header;
        assert_eq!(
            signer.verify(&altered, server_name!("us.test"), &key.public_key_base64()),
            Err(XMatrixError::BadSignature)
        );
    }

    #[test]
    fn a_request_for_another_server_is_refused() {
        let key = ServerSigningKey::generate();
        let request = signed_request(&key, "/_matrix/federation/v1/version", "", "elsewhere.test");
        let signer = signer(request.headers()).unwrap();
        assert_eq!(
            signer.verify(&request, server_name!("us.test"), &key.public_key_base64()),
            Err(XMatrixError::WrongDestination("elsewhere.test".into()))
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_told_apart() {
        assert_eq!(signer(&http::HeaderMap::new()).unwrap_err(), XMatrixError::Missing);
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, "X-Matrix origin=a.test".parse().unwrap());
        assert!(matches!(signer(&headers), Err(XMatrixError::Malformed(_))));
    }
}
