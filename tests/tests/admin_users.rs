//! Admin API, users and server: authorization, listing with paging and filters, query, create
//! and modify, deactivate, password reset, joined rooms, devices, registration tokens.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Engine, TestServer, assert_error, encode, engine_tests, password_login};

engine_tests!(
    every_admin_endpoint_needs_an_admin_token,
    users_are_listed_with_paging_and_filters,
    users_are_created_queried_and_modified,
    deactivation_and_password_reset,
    joined_rooms_and_devices,
    registration_tokens_crud,
);

const PASSWORD: &str = "correct-horse";

async fn every_admin_endpoint_needs_an_admin_token(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let room_id = server.create_room(&alice, json!({})).await;
    let alice_id = encode(&alice.user_id);
    let room = encode(&room_id);
    let endpoints: Vec<(Method, String)> = vec![
        (Method::GET, "/_synapse/admin/v1/server_version".into()),
        (Method::GET, "/_synapse/admin/v2/users".into()),
        (Method::GET, format!("/_synapse/admin/v2/users/{alice_id}")),
        (Method::PUT, format!("/_synapse/admin/v2/users/{alice_id}")),
        (Method::POST, format!("/_synapse/admin/v1/deactivate/{alice_id}")),
        (Method::POST, format!("/_synapse/admin/v1/reset_password/{alice_id}")),
        (Method::GET, format!("/_synapse/admin/v1/users/{alice_id}/joined_rooms")),
        (Method::GET, format!("/_synapse/admin/v2/users/{alice_id}/devices")),
        (Method::DELETE, format!("/_synapse/admin/v2/users/{alice_id}/devices/{}", alice.device_id)),
        (Method::GET, "/_synapse/admin/v1/registration_tokens".into()),
        (Method::POST, "/_synapse/admin/v1/registration_tokens/new".into()),
        (Method::GET, "/_synapse/admin/v1/registration_tokens/abc".into()),
        (Method::PUT, "/_synapse/admin/v1/registration_tokens/abc".into()),
        (Method::DELETE, "/_synapse/admin/v1/registration_tokens/abc".into()),
        (Method::GET, "/_synapse/admin/v1/rooms".into()),
        (Method::GET, format!("/_synapse/admin/v1/rooms/{room}")),
        (Method::GET, format!("/_synapse/admin/v1/rooms/{room}/members")),
        (Method::GET, format!("/_synapse/admin/v1/rooms/{room}/state")),
        (Method::GET, "/_synapse/admin/v1/event_reports".into()),
        (Method::GET, "/_synapse/admin/v1/event_reports/1".into()),
        (Method::GET, format!("/_synapse/admin/v1/whois/{alice_id}")),
        (Method::GET, "/_myelin/admin/v1/audit_log".into()),
        (Method::GET, "/_myelin/admin/v1/access_log".into()),
        (Method::DELETE, format!("/_synapse/admin/v2/rooms/{room}")),
        (Method::DELETE, format!("/_synapse/admin/v1/rooms/{room}")),
        (Method::POST, format!("/_synapse/admin/v1/rooms/{room}/delete")),
        (Method::GET, format!("/_synapse/admin/v2/rooms/{room}/delete_status")),
        (Method::GET, "/_synapse/admin/v2/rooms/delete_status/abc".into()),
        (Method::GET, format!("/_synapse/admin/v1/rooms/{room}/block")),
        (Method::PUT, format!("/_synapse/admin/v1/rooms/{room}/block")),
        (Method::POST, format!("/_synapse/admin/v1/purge_history/{room}")),
        (Method::POST, format!("/_synapse/admin/v1/purge_history/{room}/{}", encode("$abc"))),
        (Method::GET, "/_synapse/admin/v1/purge_history_status/abc".into()),
        (Method::GET, format!("/_synapse/admin/v1/users/{alice_id}/media")),
        (Method::DELETE, format!("/_synapse/admin/v1/users/{alice_id}/media")),
        (Method::DELETE, format!("/_synapse/admin/v1/media/{}/abcdef", server.server_name)),
        (Method::POST, "/_synapse/admin/v1/media/delete?before_ts=1".into()),
        (Method::POST, format!("/_synapse/admin/v1/media/{}/delete?before_ts=1", server.server_name)),
        (Method::POST, format!("/_synapse/admin/v1/media/quarantine/{}/abcdef", server.server_name)),
        (Method::POST, format!("/_synapse/admin/v1/media/unquarantine/{}/abcdef", server.server_name)),
        (Method::POST, format!("/_synapse/admin/v1/room/{room}/media/quarantine")),
        (Method::POST, format!("/_synapse/admin/v1/user/{alice_id}/media/quarantine")),
    ];
    for (method, path) in &endpoints {
        let body = Some(json!({"new_password": "new-password-1", "admin": true}));
        assert_error(
            server.request(method.clone(), path, None, body.clone()).await,
            StatusCode::UNAUTHORIZED,
            "M_MISSING_TOKEN",
        );
        assert_error(
            server.request(method.clone(), path, alice.token(), body).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
        assert_error(
            server.request(method.clone(), path, Some("myat_not_a_token"), None).await,
            StatusCode::UNAUTHORIZED,
            "M_UNKNOWN_TOKEN",
        );
    }
    // Nothing the non-admin attempted happened: alice is neither admin nor deactivated.
    let (status, user) = server.get(&format!("/_synapse/admin/v2/users/{alice_id}"), admin.token()).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!((user["admin"].clone(), user["deactivated"].clone()), (json!(false), json!(false)));
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "alice's device survived");
    let (status, block) = server.get(&format!("/_synapse/admin/v1/rooms/{room}/block"), admin.token()).await;
    assert_eq!((status, block), (StatusCode::OK, json!({"block": false})), "the room was not blocked");
    assert_eq!(server.count_rows("SELECT COUNT(*) FROM admin_tasks").await, 0, "no deletion or purge started");

    let (status, version) = server.get("/_synapse/admin/v1/server_version", admin.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(version["server_version"].as_str().unwrap().starts_with("Myelin "), "{version}");
}

async fn users_are_listed_with_paging_and_filters(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    for name in ["amy", "bert", "carla", "dora", "emil"] {
        server.register(name, PASSWORD).await;
    }

    // Pages of two follow each other without gaps or repeats.
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let query = from.as_ref().map_or(String::new(), |f| format!("&from={f}"));
        let (status, page) = server.get(&format!("/_synapse/admin/v2/users?limit=2{query}"), admin.token()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 6);
        let users = page["users"].as_array().unwrap();
        assert!(users.len() <= 2);
        seen.extend(users.iter().map(|u| u["name"].as_str().unwrap().to_owned()));
        match page["next_token"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => break,
        }
    }
    let mut expected: Vec<String> =
        ["amy", "bert", "carla", "dora", "emil", "root"].iter().map(|n| server.user_id(n)).collect();
    expected.sort();
    assert_eq!(seen, expected, "ordered by user ID, every user once");

    let (_, page) = server.get("/_synapse/admin/v2/users?limit=100", admin.token()).await;
    let amy = page["users"].as_array().unwrap().iter().find(|u| u["name"] == server.user_id("amy")).unwrap().clone();
    assert_eq!(amy["displayname"], "amy");
    assert_eq!(amy["admin"], false);
    assert_eq!(amy["deactivated"], false);
    assert_eq!(amy["is_guest"], false);
    assert!(amy["creation_ts"].as_i64().unwrap() > 1_600_000_000_000, "milliseconds");
    assert!(page.get("next_token").is_none());

    let names = |page: &Value| -> Vec<String> {
        page["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap().to_owned()).collect()
    };
    let (_, page) = server.get("/_synapse/admin/v2/users?name=AR", admin.token()).await;
    assert_eq!(names(&page), vec![server.user_id("carla")], "case-insensitive substring");
    assert_eq!(page["total"], 1);
    let (_, page) = server.get("/_synapse/admin/v2/users?user_id=%25", admin.token()).await;
    assert_eq!(page["total"], 0, "LIKE wildcards in the filter are literal");
    let (_, page) = server.get("/_synapse/admin/v2/users?admins=true", admin.token()).await;
    assert_eq!(names(&page), vec![server.user_id("root")]);
    let (_, page) = server.get("/_synapse/admin/v2/users?admins=false&guests=false", admin.token()).await;
    assert_eq!(page["total"], 5);
    let (_, page) = server.get("/_synapse/admin/v2/users?dir=b&limit=1", admin.token()).await;
    assert_eq!(names(&page), vec![server.user_id("root")]);
    assert_eq!(page["next_token"], "1");

    // Deactivated users are hidden unless asked for.
    let (status, _) = server
        .post(&format!("/_synapse/admin/v1/deactivate/{}", encode(&server.user_id("bert"))), admin.token(), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, page) = server.get("/_synapse/admin/v2/users", admin.token()).await;
    assert_eq!(page["total"], 5);
    assert!(!names(&page).contains(&server.user_id("bert")));
    let (_, page) = server.get("/_synapse/admin/v2/users?deactivated=true", admin.token()).await;
    assert_eq!(page["total"], 6);

    // Every order synapse-admin offers is accepted (fields all users share sort by user ID).
    for order in ["is_guest", "avatar_url", "creation_ts", "displayname", "shadow_banned", "locked", "admin"] {
        let (status, page) = server.get(&format!("/_synapse/admin/v2/users?order_by={order}"), admin.token()).await;
        assert_eq!((status, page["total"].clone()), (StatusCode::OK, json!(5)), "{order}: {page}");
    }
    let (_, page) = server.get("/_synapse/admin/v2/users?order_by=admin&dir=b&limit=1", admin.token()).await;
    assert_eq!(names(&page), vec![server.user_id("root")], "the only admin first");

    assert_error(
        server.get("/_synapse/admin/v2/users?limit=-1", admin.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        server.get("/_synapse/admin/v2/users?from=x", admin.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        server.get("/_synapse/admin/v2/users?order_by=password_hash", admin.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
}

async fn users_are_created_queried_and_modified(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let frank = server.user_id("frank");
    let path = format!("/_synapse/admin/v2/users/{}", encode(&frank));

    assert_error(server.get(&path, admin.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(
        server.get("/_synapse/admin/v2/users/%40x%3Aelsewhere.example", admin.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    assert_error(
        server.get("/_synapse/admin/v2/users/%FF", admin.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        server.get("/_synapse/admin/v2/users/alice", admin.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    let (status, created) =
        server.put(&path, admin.token(), json!({"password": "franks-password", "displayname": "Frank F"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], frank.as_str());
    assert_eq!(created["displayname"], "Frank F");
    assert_eq!(created["admin"], false);
    let session = server.login("frank", "franks-password").await;

    let (status, user) = server.get(&path, admin.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user, created, "GET answers what PUT returned");
    for field in ["threepids", "external_ids", "avatar_url", "shadow_banned", "locked", "creation_ts", "user_type"] {
        assert!(user.get(field).is_some(), "Synapse's field {field} is present: {user}");
    }

    // Modifying answers 200; a new password logs the user's devices out.
    let (status, modified) = server
        .put(&path, admin.token(), json!({"displayname": "Frank", "admin": true, "password": "new-password-2"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{modified}");
    assert_eq!((modified["displayname"].clone(), modified["admin"].clone()), (json!("Frank"), json!(true)));
    assert_error(
        server.get("/_matrix/client/v3/account/whoami", session.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let (status, _) = server.post("/_matrix/client/v3/login", None, password_login("frank", "franks-password")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the old password is gone");
    let frank_session = server.login("frank", "new-password-2").await;
    let (status, _) = server.get("/_synapse/admin/v2/users", frank_session.token()).await;
    assert_eq!(status, StatusCode::OK, "frank is an admin now");
    let (_, profile) = server.get(&format!("/_matrix/client/v3/profile/{}", encode(&frank)), None).await;
    assert_eq!(profile["displayname"], "Frank");

    // Admins cannot demote themselves; a weak password is refused.
    assert_error(
        server
            .put(
                &format!("/_synapse/admin/v2/users/{}", encode(&admin.user_id)),
                admin.token(),
                json!({"admin": false}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        server.put(&path, admin.token(), json!({"password": "short"})).await,
        StatusCode::BAD_REQUEST,
        "M_WEAK_PASSWORD",
    );
    assert_error(
        server.put(&path, admin.token(), json!({"admin": "yes"})).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    let (status, unchanged) = server.request(Method::PUT, &path, admin.token(), None).await;
    assert_eq!(
        (status, unchanged["displayname"].clone()),
        (StatusCode::OK, json!("Frank")),
        "an empty body changes nothing"
    );

    // Deactivating through PUT, then reactivating with a password.
    let (status, user) = server.put(&path, admin.token(), json!({"deactivated": true})).await;
    assert_eq!((status, user["deactivated"].clone()), (StatusCode::OK, json!(true)));
    assert_error(
        server.get("/_matrix/client/v3/account/whoami", frank_session.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        server.put(&path, admin.token(), json!({"deactivated": false})).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let (status, user) =
        server.put(&path, admin.token(), json!({"deactivated": false, "password": "third-password"})).await;
    assert_eq!((status, user["deactivated"].clone()), (StatusCode::OK, json!(false)));
    server.login("frank", "third-password").await;
}

async fn deactivation_and_password_reset(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let reset = |user: &str| format!("/_synapse/admin/v1/reset_password/{}", encode(user));

    assert_error(
        server.post(&reset(&alice.user_id), admin.token(), json!({})).await,
        StatusCode::BAD_REQUEST,
        "M_MISSING_PARAM",
    );
    let (status, body) =
        server.post(&reset(&alice.user_id), admin.token(), json!({"new_password": "alice-new-pass"})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_error(
        server.get("/_matrix/client/v3/account/whoami", alice.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let alice = server.login("alice", "alice-new-pass").await;
    let (status, _) = server
        .post(
            &reset(&alice.user_id),
            admin.token(),
            json!({"new_password": "alice-third-pass", "logout_devices": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "logout_devices=false keeps sessions");
    assert_error(
        server.post(&reset(&server.user_id("nobody")), admin.token(), json!({"new_password": "whatever-pass"})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    let deactivate = |user: &str| format!("/_synapse/admin/v1/deactivate/{}", encode(user));
    let (status, body) = server.post(&deactivate(&bob.user_id), admin.token(), json!({"erase": true})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"id_server_unbind_result": "success"})));
    assert_error(
        server.get("/_matrix/client/v3/account/whoami", bob.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let (status, _) = server.post("/_matrix/client/v3/login", None, password_login("bob", PASSWORD)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, user) = server.get(&format!("/_synapse/admin/v2/users/{}", encode(&bob.user_id)), admin.token()).await;
    assert_eq!(user["deactivated"], true);
    assert_eq!(user["displayname"], Value::Null, "erase clears the profile");
    assert_error(
        server.post(&deactivate(&server.user_id("nobody")), admin.token(), json!({})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        server.post(&deactivate(&bob.user_id), admin.token(), json!({"erase": "yes"})).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    let raw = server
        .raw(
            Method::POST,
            &format!("{}?access_token={}", deactivate(&bob.user_id), admin.access_token),
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    assert_eq!(raw.json::<Value>().await.unwrap()["errcode"], "M_NOT_JSON");
}

async fn joined_rooms_and_devices(engine: Engine) {
    let server = TestServer::start(engine).await;
    let admin = server.admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let second = server.login("alice", PASSWORD).await;
    let first_room = server.create_room(&alice, json!({})).await;
    let second_room = server.create_room(&alice, json!({})).await;
    let left = server.create_room(&alice, json!({})).await;
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{left}/leave"), alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let alice_id = encode(&alice.user_id);

    let (status, rooms) = server.get(&format!("/_synapse/admin/v1/users/{alice_id}/joined_rooms"), admin.token()).await;
    assert_eq!(status, StatusCode::OK);
    let mut expected = vec![first_room.clone(), second_room.clone()];
    expected.sort();
    let mut joined: Vec<String> =
        rooms["joined_rooms"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
    joined.sort();
    assert_eq!((joined, rooms["total"].clone()), (expected, json!(2)));
    assert_error(
        server
            .get(&format!("/_synapse/admin/v1/users/{}/joined_rooms", encode(&server.user_id("nobody"))), admin.token())
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    let (status, devices) = server.get(&format!("/_synapse/admin/v2/users/{alice_id}/devices"), admin.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(devices["total"], 2);
    let ids: Vec<&str> =
        devices["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&alice.device_id.as_str()) && ids.contains(&second.device_id.as_str()));
    assert!(devices["devices"].as_array().unwrap().iter().all(|d| d["user_id"] == alice.user_id.as_str()));
    // "Last seen" comes from the access log: alice's first device made requests from loopback.
    server.state.access_log.flush().await;
    let (_, devices) = server.get(&format!("/_synapse/admin/v2/users/{alice_id}/devices"), admin.token()).await;
    let first =
        devices["devices"].as_array().unwrap().iter().find(|d| d["device_id"] == alice.device_id.as_str()).unwrap();
    assert_eq!(first["last_seen_ip"], "127.0.0.1", "{devices}");
    assert!(first["last_seen_ts"].as_i64().unwrap() > 0);
    let (status, one) =
        server.get(&format!("/_synapse/admin/v2/users/{alice_id}/devices/{}", alice.device_id), admin.token()).await;
    assert_eq!((status, one["last_seen_ip"].clone()), (StatusCode::OK, json!("127.0.0.1")));

    let device_path = format!("/_synapse/admin/v2/users/{alice_id}/devices/{}", second.device_id);
    let (status, body) = server.delete(&device_path, admin.token(), json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_error(
        server.get("/_matrix/client/v3/account/whoami", second.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "the other device stays");
    let (_, devices) = server.get(&format!("/_synapse/admin/v2/users/{alice_id}/devices"), admin.token()).await;
    assert_eq!(devices["total"], 1);
    assert_error(server.delete(&device_path, admin.token(), json!({})).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

async fn registration_tokens_crud(engine: Engine) {
    let server = TestServer::start_with(engine, |config| {
        config.registration = homeserver::config::RegistrationMode::Token;
    })
    .await;
    let admin = server.admin("root", PASSWORD).await;
    let base = "/_synapse/admin/v1/registration_tokens";

    let (status, created) =
        server.post(&format!("{base}/new"), admin.token(), json!({"token": "abc.DEF-1", "uses_allowed": 1})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(
        created,
        json!({"token": "abc.DEF-1", "uses_allowed": 1, "pending": 0, "completed": 0, "expiry_time": null})
    );
    let (status, random) = server.post(&format!("{base}/new"), admin.token(), json!({"length": 20})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(random["token"].as_str().unwrap().len(), 20);
    assert_eq!(random["uses_allowed"], Value::Null);

    assert_error(
        server.post(&format!("{base}/new"), admin.token(), json!({"token": "abc.DEF-1"})).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        server.post(&format!("{base}/new"), admin.token(), json!({"token": "no spaces"})).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        server.post(&format!("{base}/new"), admin.token(), json!({"uses_allowed": -1})).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        server.post(&format!("{base}/new"), admin.token(), json!({"expiry_time": 1})).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        server.post(&format!("{base}/new"), admin.token(), json!({"length": 65})).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    let (status, one) = server.get(&format!("{base}/abc.DEF-1"), admin.token()).await;
    assert_eq!((status, one["uses_allowed"].clone()), (StatusCode::OK, json!(1)));
    assert_error(server.get(&format!("{base}/missing"), admin.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // The token works for registration once, after which it is listed as invalid.
    let body = json!({"username": "newbie", "password": PASSWORD});
    let (_, challenge) = server.post("/_matrix/client/v3/register", None, body.clone()).await;
    let mut with_auth = body;
    with_auth["auth"] =
        json!({"type": "m.login.registration_token", "token": "abc.DEF-1", "session": challenge["session"]});
    let (status, registered) = server.post("/_matrix/client/v3/register", None, with_auth).await;
    assert_eq!(status, StatusCode::OK, "{registered}");
    let (_, one) = server.get(&format!("{base}/abc.DEF-1"), admin.token()).await;
    assert_eq!(one["completed"], 1);
    let (_, invalid) = server.get(&format!("{base}?valid=false"), admin.token()).await;
    let tokens = |list: &Value| -> Vec<String> {
        list["registration_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["token"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(tokens(&invalid), vec!["abc.DEF-1".to_owned()]);
    let (_, valid) = server.get(&format!("{base}?valid=true"), admin.token()).await;
    assert_eq!(tokens(&valid), vec![random["token"].as_str().unwrap().to_owned()]);
    let (_, all) = server.get(base, admin.token()).await;
    assert_eq!(tokens(&all).len(), 2);

    // Update: raise the limit, set then clear an expiry; absent fields stay.
    let expiry = server.state.now_ms() + 3_600_000;
    let (status, updated) = server
        .put(&format!("{base}/abc.DEF-1"), admin.token(), json!({"uses_allowed": 5, "expiry_time": expiry}))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!((updated["uses_allowed"].clone(), updated["expiry_time"].clone()), (json!(5), json!(expiry)));
    let (_, updated) = server.put(&format!("{base}/abc.DEF-1"), admin.token(), json!({"expiry_time": null})).await;
    assert_eq!((updated["uses_allowed"].clone(), updated["expiry_time"].clone()), (json!(5), Value::Null));
    assert_error(
        server.put(&format!("{base}/missing"), admin.token(), json!({"uses_allowed": 1})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    let (status, body) = server.delete(&format!("{base}/abc.DEF-1"), admin.token(), json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_error(server.get(&format!("{base}/abc.DEF-1"), admin.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(
        server.delete(&format!("{base}/abc.DEF-1"), admin.token(), json!({})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}
