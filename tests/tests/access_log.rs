//! The access log: authenticated requests are recorded with the right fields, never with tokens
//! or message content; IP modes; readers (paging, filters, whois); retention; the JSON-lines file.

use homeserver::config::IpMode;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Engine, TestServer, encode, engine_tests, temp_dir};

engine_tests!(
    authenticated_requests_are_recorded_without_secrets,
    readers_page_and_filter_and_whois_answers,
    ip_is_hashed_or_dropped_as_configured,
    forwarded_for_counts_only_from_trusted_proxies,
    old_entries_are_pruned_and_the_file_gets_every_entry,
);

const PASSWORD: &str = "correct-horse";
const AGENT: &str = "access-log-test/1.0";

/// Sends a request as a particular client would: user agent, token in the header or the query.
async fn client_request(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    in_query: bool,
    body: Option<Value>,
) -> StatusCode {
    let client = reqwest::Client::new();
    let url = if in_query {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{separator}access_token={token}", server.base_url)
    } else {
        format!("{}{path}", server.base_url)
    };
    let mut request = client.request(method, url).header("user-agent", AGENT);
    if !in_query {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap().status()
}

async fn entries(server: &TestServer, admin: &str, query: &str) -> Value {
    server.state.access_log.flush().await;
    let (status, body) = server.get(&format!("/_myelin/admin/v1/access_log?{query}"), Some(admin)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn authenticated_requests_are_recorded_without_secrets(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let room_id = server.create_room(&alice, json!({})).await;
    let secret_text = "the launch code is 0000-sekrit";
    let txn = "txn-unique-4711";
    let send = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", encode(&room_id));
    let sent = client_request(
        &server,
        reqwest::Method::PUT,
        &send,
        &alice.access_token,
        false,
        Some(json!({"msgtype": "m.text", "body": secret_text})),
    )
    .await;
    assert_eq!(sent, StatusCode::OK);
    let whoami = client_request(
        &server,
        reqwest::Method::GET,
        "/_matrix/client/v3/account/whoami",
        &alice.access_token,
        true,
        None,
    )
    .await;
    assert_eq!(whoami, StatusCode::OK);
    let missing = format!("/_matrix/client/v3/rooms/{}/event/%24nope", encode(&room_id));
    let not_found = client_request(&server, reqwest::Method::GET, &missing, &alice.access_token, false, None).await;
    assert_eq!(not_found, StatusCode::NOT_FOUND);
    // Unauthenticated requests and bad tokens are not "authenticated requests".
    server.get("/_matrix/client/versions", None).await;
    server.get("/_matrix/client/v3/account/whoami", Some("myat_bogus")).await;

    let log = entries(&server, &admin.access_token, &format!("user_id={}", encode(&alice.user_id))).await;
    let rows = log["entries"].as_array().unwrap();
    let by_route = |suffix: &str| -> Vec<&Value> {
        rows.iter().filter(|r| r["route"].as_str().unwrap().ends_with(suffix)).collect()
    };

    let sends = by_route("/send/{event_type}/{txn_id}");
    assert_eq!(sends.len(), 1, "{log}");
    let row = sends[0];
    assert_eq!(row["route"], "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}");
    assert_eq!(row["method"], "PUT");
    assert_eq!(row["status"], 200);
    assert_eq!(row["user_id"], alice.user_id.as_str());
    assert_eq!(row["device_id"], alice.device_id.as_str());
    assert_eq!(row["room_id"], room_id.as_str());
    assert_eq!(row["ip"], "127.0.0.1");
    assert_eq!(row["user_agent"], AGENT);
    assert!(row["latency_us"].as_i64().unwrap() > 0);
    let ts = row["ts"].as_i64().unwrap();
    assert!((server.state.now_ms() - ts).abs() < 60_000);

    let whoamis = by_route("/account/whoami");
    assert_eq!(whoamis.len(), 1, "the query-string token authenticated and was recorded: {log}");
    assert_eq!((whoamis[0]["status"].clone(), whoamis[0]["room_id"].clone()), (json!(200), Value::Null));
    let events = by_route("/event/{event_id}");
    assert_eq!((events.len(), events[0]["status"].clone()), (1, json!(404)));
    // createRoom was recorded too; versions (no token) and the bogus token were not.
    assert!(rows.iter().any(|r| r["route"] == "/_matrix/client/v3/createRoom"));
    let everything = entries(&server, &admin.access_token, "limit=1000").await;
    assert!(!everything["entries"].as_array().unwrap().iter().any(|r| r["route"] == "/_matrix/client/versions"));

    // The whole table holds no token, no message content and no raw path (transaction ID).
    let dump = serde_json::to_string(&everything).unwrap();
    for secret in [alice.access_token.as_str(), admin.access_token.as_str(), secret_text, txn, "myat_"] {
        assert!(!dump.contains(secret), "{secret} leaked into the access log: {dump}");
    }
}

async fn readers_page_and_filter_and_whois_answers(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let phone = server.login("alice", PASSWORD).await;
    let room_id = server.create_room(&alice, json!({})).await;
    for _ in 0..4 {
        server.get("/_matrix/client/v3/account/whoami", alice.token()).await;
    }
    server.send_text(&phone, &room_id, "hello").await;
    let alice_filter = format!("user_id={}", encode(&alice.user_id));

    // Pages of two follow each other in order without gaps or repeats.
    let all = entries(&server, &admin.access_token, &format!("{alice_filter}&limit=100")).await;
    let all_ids: Vec<i64> = all["entries"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(all_ids.len(), 6, "createRoom, 4 × whoami, send: {all}");
    let mut paged = Vec::new();
    let mut from = String::new();
    loop {
        let page = entries(&server, &admin.access_token, &format!("{alice_filter}&limit=2&from={from}")).await;
        paged.extend(page["entries"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()));
        match page["next_token"].as_str() {
            Some(next) => from = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(paged, all_ids);
    let mut sorted = all_ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, all_ids, "oldest first");

    let in_room = entries(&server, &admin.access_token, &format!("room_id={}", encode(&room_id))).await;
    let in_room = in_room["entries"].as_array().unwrap();
    assert_eq!(in_room.len(), 1);
    assert_eq!(in_room[0]["device_id"], phone.device_id.as_str());
    let future = entries(&server, &admin.access_token, &format!("since={}", server.state.now_ms() + 60_000)).await;
    assert!(future["entries"].as_array().unwrap().is_empty());
    let past = entries(&server, &admin.access_token, &format!("until={}", server.state.now_ms() - 60_000)).await;
    assert!(past["entries"].as_array().unwrap().is_empty());

    let (status, whois) =
        server.get(&format!("/_synapse/admin/v1/whois/{}", encode(&alice.user_id)), admin.token()).await;
    assert_eq!(status, StatusCode::OK, "{whois}");
    assert_eq!(whois["user_id"], alice.user_id.as_str());
    let devices = whois["devices"].as_object().unwrap();
    assert_eq!(devices.len(), 2, "{whois}");
    let connection = &devices[&alice.device_id]["sessions"][0]["connections"][0];
    assert_eq!(connection["ip"], "127.0.0.1");
    assert!(connection["last_seen"].as_i64().unwrap() > 0);
    assert!(connection.get("user_agent").is_some());
    let (status, _) =
        server.get(&format!("/_synapse/admin/v1/whois/{}", encode(&server.user_id("nobody"))), admin.token()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn ip_is_hashed_or_dropped_as_configured(engine: Engine) {
    for (mode, check) in [
        (
            IpMode::Hash,
            (|ip: &Value| ip.as_str().is_some_and(|ip| ip.starts_with("hash:") && !ip.contains("127.0.0.1")))
                as fn(&Value) -> bool,
        ),
        (IpMode::Drop, |ip: &Value| ip.is_null()),
    ] {
        let server = TestServer::start_with(engine, |config| config.access_log.ip_mode = mode).await;
        let admin = server.admin("root", PASSWORD).await;
        let alice = server.register("alice", PASSWORD).await;
        server.get("/_matrix/client/v3/account/whoami", alice.token()).await;
        server.get("/_matrix/client/v3/account/whoami", alice.token()).await;
        let log = entries(&server, &admin.access_token, &format!("user_id={}", encode(&alice.user_id))).await;
        let ips: Vec<Value> = log["entries"].as_array().unwrap().iter().map(|r| r["ip"].clone()).collect();
        assert_eq!(ips.len(), 2);
        assert!(ips.iter().all(check), "{mode:?}: {ips:?}");
        assert_eq!(ips[0], ips[1], "{mode:?}: the same address maps to the same value within a day");
    }
}

async fn old_entries_are_pruned_and_the_file_gets_every_entry(engine: Engine) {
    let file = temp_dir("access-log").join("access.jsonl");
    let path = file.display().to_string();
    let server = TestServer::start_with(engine, |config| config.access_log.file = path).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    server.get("/_matrix/client/v3/account/whoami", alice.token()).await;
    server.clock.advance_secs(29 * 86_400);
    server.get("/_matrix/client/v3/account/whoami", alice.token()).await;
    server.state.access_log.flush().await;

    let retention_ms = 28 * 86_400_000;
    let deleted = homeserver::access_log::prune_before(&server.state.storage, server.state.now_ms() - retention_ms)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let log = entries(&server, &admin.access_token, &format!("user_id={}", encode(&alice.user_id))).await;
    let rows = log["entries"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "only the recent entry stays");

    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let alices: Vec<&Value> = lines.iter().filter(|l| l["user_id"] == alice.user_id.as_str()).collect();
    assert_eq!(alices.len(), 2, "the file keeps its own history: {text}");
    assert!(alices.iter().all(|l| l["route"] == "/_matrix/client/v3/account/whoami" && l["status"] == 200));
    assert!(!text.contains(&alice.access_token));

    // A disabled log records nothing.
    let server = TestServer::start_with(engine, |config| config.access_log.enabled = false).await;
    let admin = server.admin("root", PASSWORD).await;
    server.get("/_matrix/client/v3/account/whoami", admin.token()).await;
    let log = entries(&server, &admin.access_token, "").await;
    assert!(log["entries"].as_array().unwrap().is_empty());
}

async fn forwarded_for_counts_only_from_trusted_proxies(engine: Engine) {
    for (trusted, expected) in [(vec!["127.0.0.1".to_owned()], "203.0.113.9"), (vec![], "127.0.0.1")] {
        let server = TestServer::start_with(engine, |config| config.access_log.trusted_proxies = trusted.clone()).await;
        let admin = server.admin("root", PASSWORD).await;
        let alice = server.register("alice", PASSWORD).await;
        let status = reqwest::Client::new()
            .get(format!("{}/_matrix/client/v3/account/whoami", server.base_url))
            .bearer_auth(&alice.access_token)
            .header("x-forwarded-for", "203.0.113.9")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK);
        let log = entries(&server, &admin.access_token, &format!("user_id={}", encode(&alice.user_id))).await;
        let ips: Vec<Value> = log["entries"].as_array().unwrap().iter().map(|r| r["ip"].clone()).collect();
        assert_eq!(ips, vec![json!(expected)], "trusted proxies {trusted:?}");
    }
}
