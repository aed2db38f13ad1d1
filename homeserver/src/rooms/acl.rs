//! Server ACLs (`m.room.server_acl`): which servers may take part in a room. Checked on what
//! other servers send us and ask of us; it never limits local users.

use ruma::RoomId;

use crate::error::{Error, Result};
use crate::state::AppState;

/// Whether `pattern` (with `*` for any run of characters, `?` for one) matches `text`.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative matching with backtracking to the last `*`, linear in practice.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi].eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether an ACL's content lets `server` in. The port is not part of the match.
pub fn allows(acl: &serde_json::Value, server: &str) -> bool {
    let host = federation::discovery::split_server_name(server).map_or_else(|_| server.to_owned(), |(host, _)| host);
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    if is_ip && acl["allow_ip_literals"].as_bool() == Some(false) {
        return false;
    }
    let any = |field: &str| {
        acl[field].as_array().into_iter().flatten().filter_map(|g| g.as_str()).any(|g| glob_matches(g, &host))
    };
    !any("deny") && any("allow")
}

/// Refuses `server` if the room's current ACL denies it.
pub async fn check(state: &AppState, room_id: &RoomId, server: &str) -> Result<()> {
    let Ok(room) = super::state::room(state, room_id.as_str()).await else { return Ok(()) };
    if room.row.current_state_group.is_none() {
        return Ok(());
    }
    match super::state::current_state_content(state, &room, "m.room.server_acl", "").await? {
        Some(acl) if !allows(&acl, server) => {
            Err(Error::forbidden(format!("{server} is denied by the room's server ACL")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn globs_match_like_the_spec_says() {
        assert!(glob_matches("*", "anything.org"));
        assert!(glob_matches("*.evil.com", "a.evil.com"));
        assert!(!glob_matches("*.evil.com", "evil.com"));
        assert!(glob_matches("ma?rix.org", "matrix.org"));
        assert!(glob_matches("EXAMPLE.org", "example.org"));
        assert!(!glob_matches("example.org", "example.org.evil"));
    }

    #[test]
    fn deny_wins_ports_are_ignored_and_ip_literals_can_be_refused() {
        let acl = json!({"allow": ["*"], "deny": ["*.evil.com", "bad.org"]});
        assert!(allows(&acl, "good.org:8448"));
        assert!(!allows(&acl, "bad.org:8448"));
        assert!(!allows(&acl, "x.evil.com"));
        assert!(!allows(&json!({"deny": []}), "good.org"), "nothing allowed when `allow` is empty");
        let no_ips = json!({"allow": ["*"], "allow_ip_literals": false});
        assert!(!allows(&no_ips, "127.0.0.1:8448"));
        assert!(!allows(&no_ips, "[::1]:8448"));
        assert!(allows(&no_ips, "good.org"));
    }
}
