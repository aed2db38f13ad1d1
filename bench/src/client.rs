//! A minimal Matrix client for load generation.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

#[derive(Clone, Debug)]
pub struct User {
    pub user_id: String,
    pub token: String,
}

static TXN: AtomicU64 = AtomicU64::new(0);

impl Client {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().expect("HTTP client");
        Self { http, base: base.trim_end_matches('/').to_owned() }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{method} {path}: {status} {value}");
        }
        Ok(value)
    }

    /// Registers through the dummy UIA flow, answering the server's challenge.
    pub async fn register(&self, username: &str, password: &str) -> anyhow::Result<User> {
        let path = "/_matrix/client/v3/register";
        let mut body = json!({"username": username, "password": password, "inhibit_login": false});
        let first = self.http.post(format!("{}{path}", self.base)).json(&body).send().await?;
        let challenge: Value = first.json().await?;
        if let Some(token) = challenge["access_token"].as_str() {
            let user_id = challenge["user_id"].as_str().context("user_id")?.to_owned();
            return Ok(User { user_id, token: token.to_owned() });
        }
        body["auth"] = json!({"type": "m.login.dummy", "session": challenge["session"]});
        let done = self.call(Method::POST, path, None, Some(&body)).await?;
        Ok(User {
            user_id: done["user_id"].as_str().context("user_id")?.to_owned(),
            token: done["access_token"].as_str().context("access_token")?.to_owned(),
        })
    }

    pub async fn create_room(&self, user: &User, body: Value) -> anyhow::Result<String> {
        let response = self.call(Method::POST, "/_matrix/client/v3/createRoom", Some(&user.token), Some(&body)).await?;
        Ok(response["room_id"].as_str().context("room_id")?.to_owned())
    }

    pub async fn join(&self, user: &User, room_id: &str) -> anyhow::Result<()> {
        let path = format!("/_matrix/client/v3/rooms/{}/join", encode(room_id));
        self.call(Method::POST, &path, Some(&user.token), Some(&json!({}))).await?;
        Ok(())
    }

    pub async fn send_text(&self, user: &User, room_id: &str, body: &str) -> anyhow::Result<String> {
        let txn = TXN.fetch_add(1, Ordering::Relaxed);
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/bench{}-{txn}",
            encode(room_id),
            std::process::id()
        );
        let response =
            self.call(Method::PUT, &path, Some(&user.token), Some(&json!({"msgtype": "m.text", "body": body}))).await?;
        Ok(response["event_id"].as_str().context("event_id")?.to_owned())
    }

    pub async fn sync(&self, user: &User, since: Option<&str>, timeout_ms: u64) -> anyhow::Result<Value> {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(since) = since {
            path.push_str(&format!("&since={}", encode(since)));
        }
        self.call(Method::GET, &path, Some(&user.token), None).await
    }

    pub async fn messages(
        &self,
        user: &User,
        room_id: &str,
        from: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<Value> {
        let mut path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}", encode(room_id));
        if let Some(from) = from {
            path.push_str(&format!("&from={}", encode(from)));
        }
        self.call(Method::GET, &path, Some(&user.token), None).await
    }

    pub async fn set_displayname(&self, user: &User, name: &str) -> anyhow::Result<()> {
        let path = format!("/_matrix/client/v3/profile/{}/displayname", encode(&user.user_id));
        self.call(Method::PUT, &path, Some(&user.token), Some(&json!({"displayname": name}))).await?;
        Ok(())
    }

    pub async fn joined_members(&self, user: &User, room_id: &str) -> anyhow::Result<usize> {
        let path = format!("/_matrix/client/v3/rooms/{}/joined_members", encode(room_id));
        let response = self.call(Method::GET, &path, Some(&user.token), None).await?;
        Ok(response["joined"].as_object().map_or(0, |m| m.len()))
    }
}

/// Percent-encodes a path or query component.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
