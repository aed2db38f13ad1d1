//! `/pushrules/`: server defaults, user rules, ordering, enabled and actions.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Engine, TestServer, assert_error, engine_tests};

engine_tests!(push_rules_crud);

async fn push_rules_crud(engine: Engine) {
    let server = TestServer::start(engine).await;
    let alice = server.register("alice", "correct-horse").await;
    let rules = "/_matrix/client/v3/pushrules";

    // The spec's server-default rules, with the user's ID filled in.
    let (status, all) = server.get(&format!("{rules}/"), alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    let overrides = all["global"]["override"].as_array().unwrap();
    assert!(overrides.iter().any(|r| r["rule_id"] == ".m.rule.master" && r["default"] == true));
    let underride = all["global"]["underride"].as_array().unwrap();
    assert!(underride.iter().any(|r| r["rule_id"] == ".m.rule.message" && r["default"] == true));

    // Add two keyword rules; `before` puts the second first.
    let (status, _) = server
        .put(&format!("{rules}/global/content/cats"), alice.token(), json!({"pattern": "cat*", "actions": ["notify"]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    server
        .put(
            &format!("{rules}/global/content/dogs?before=cats"),
            alice.token(),
            json!({"pattern": "dog*", "actions": ["notify"]}),
        )
        .await;
    let (_, all) = server.get(&format!("{rules}/"), alice.token()).await;
    let ids: Vec<&str> =
        all["global"]["content"].as_array().unwrap().iter().map(|r| r["rule_id"].as_str().unwrap()).collect();
    let dogs = ids.iter().position(|id| *id == "dogs").unwrap();
    let cats = ids.iter().position(|id| *id == "cats").unwrap();
    assert!(dogs < cats, "{ids:?}");

    let (status, rule) = server.get(&format!("{rules}/global/content/cats"), alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rule["pattern"], "cat*");

    // Enabled and actions, for user and default rules alike.
    let (status, _) =
        server.put(&format!("{rules}/global/content/cats/enabled"), alice.token(), json!({"enabled": false})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.get(&format!("{rules}/global/content/cats/enabled"), alice.token()).await.1["enabled"], false);
    let master = format!("{rules}/global/override/.m.rule.master");
    server.put(&format!("{master}/enabled"), alice.token(), json!({"enabled": true})).await;
    assert_eq!(server.get(&format!("{master}/enabled"), alice.token()).await.1["enabled"], true);
    server.put(&format!("{rules}/global/content/cats/actions"), alice.token(), json!({"actions": []})).await;
    assert_eq!(
        server.get(&format!("{rules}/global/content/cats/actions"), alice.token()).await.1["actions"],
        json!([])
    );

    // The rules reach the client through sync as m.push_rules account data.
    let sync = server.sync(&alice, "").await;
    let pushed =
        sync["account_data"]["events"].as_array().unwrap().iter().find(|e| e["type"] == "m.push_rules").cloned();
    assert!(pushed.unwrap()["content"]["global"]["content"].as_array().unwrap().iter().any(|r| r["rule_id"] == "cats"));

    // Deleting; default rules cannot be deleted; unknown rules are 404.
    let (status, _) = server.delete(&format!("{rules}/global/content/dogs"), alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        server.get(&format!("{rules}/global/content/dogs"), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(server.delete(&master, alice.token(), json!({})).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    assert_error(
        server
            .put(&format!("{rules}/global/content/.m.mine"), alice.token(), json!({"pattern": "x", "actions": []}))
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        server
            .put(
                &format!("{rules}/global/content/birds?after=nope"),
                alice.token(),
                json!({"pattern": "b", "actions": []}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    // Clients cannot overwrite them through the account data API.
    let raw = format!("/_matrix/client/v3/user/{}/account_data/m.push_rules", alice.user_id);
    assert_error(server.put(&raw, alice.token(), json!({})).await, StatusCode::METHOD_NOT_ALLOWED, "M_BAD_JSON");
}
