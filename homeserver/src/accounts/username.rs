//! The spec's rules for user IDs chosen at registration.

use ruma::{OwnedUserId, ServerName, UserId};

use crate::error::{Error, Result};

/// Longest user ID the spec allows, in bytes (including `@` and `:server`).
const MAX_USER_ID_LEN: usize = 255;

fn invalid(message: impl Into<String>) -> Error {
    Error::matrix(http::StatusCode::BAD_REQUEST, ruma::api::error::ErrorKind::InvalidUsername, message)
}

/// Validates a requested localpart (or full user ID on this server) and returns the user ID.
pub fn user_id_for_registration(requested: &str, server_name: &ServerName) -> Result<OwnedUserId> {
    let localpart = match requested.strip_prefix('@') {
        Some(rest) => match rest.split_once(':') {
            Some((localpart, server)) if server == server_name.as_str() => localpart,
            Some(_) => return Err(invalid("User ID must be on this server")),
            None => return Err(invalid("Malformed user ID")),
        },
        None => requested,
    };
    if localpart.is_empty() {
        return Err(invalid("User ID cannot be empty"));
    }
    if !localpart.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+')) {
        return Err(invalid("User ID may only contain a-z, 0-9, and . _ = - / +"));
    }
    if localpart.starts_with('_') {
        return Err(invalid("User IDs starting with '_' are reserved"));
    }
    if localpart.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("Numeric user IDs are reserved"));
    }
    let full = format!("@{localpart}:{server_name}");
    if full.len() > MAX_USER_ID_LEN {
        return Err(invalid(format!("User ID may be at most {MAX_USER_ID_LEN} characters")));
    }
    UserId::parse(full).map_err(|e| invalid(format!("Invalid user ID: {e}")))
}

/// Resolves a login identifier (localpart or full user ID) to a user ID on this server.
/// Returns `None` when it cannot name a local user.
pub fn user_id_for_login(identifier: &str, server_name: &ServerName) -> Option<OwnedUserId> {
    let user_id = if identifier.starts_with('@') {
        UserId::parse(identifier).ok()?
    } else {
        UserId::parse(format!("@{}:{server_name}", identifier.to_lowercase())).ok()?
    };
    (user_id.server_name() == server_name).then_some(user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> &'static ServerName {
        <&ServerName>::try_from("example.org").unwrap()
    }

    #[test]
    fn accepts_spec_localparts() {
        let id = user_id_for_registration("alice.b-c_d=e/f+g", server()).unwrap();
        assert_eq!(id.as_str(), "@alice.b-c_d=e/f+g:example.org");
        assert_eq!(user_id_for_registration("@bob:example.org", server()).unwrap().as_str(), "@bob:example.org");
    }

    #[test]
    fn rejects_invalid_localparts() {
        for bad in ["", "Alice", "al ice", "al:ice", "_bridge", "12345", "@bob:other.org", "émile"] {
            let err = user_id_for_registration(bad, server()).unwrap_err();
            assert_eq!(err.errcode(), "M_INVALID_USERNAME", "{bad}");
        }
        let long = "a".repeat(250);
        assert!(user_id_for_registration(&long, server()).is_err());
    }

    #[test]
    fn login_identifiers() {
        assert_eq!(user_id_for_login("Alice", server()).unwrap().as_str(), "@alice:example.org");
        assert_eq!(user_id_for_login("@alice:example.org", server()).unwrap().as_str(), "@alice:example.org");
        assert!(user_id_for_login("@alice:other.org", server()).is_none());
        assert!(user_id_for_login("@broken", server()).is_none());
    }
}
