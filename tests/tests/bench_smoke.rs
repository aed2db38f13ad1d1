//! The benchmark, run with tiny parameters so it cannot rot. It asserts that every scenario
//! completes and the join storm ends with the right member count, never a timing.

use crate::common::{Engine, TestServer, engine_tests};

engine_tests!(benchmark_smoke_run);

async fn benchmark_smoke_run(engine: Engine) {
    let server = TestServer::start(engine).await;
    let args = bench::Args {
        url: server.base_url.clone(),
        label: "smoke".into(),
        users: 6,
        rooms: 3,
        members: 3,
        messages: 30,
        message_bytes: 100,
        concurrency: 4,
        latency_samples: 3,
        join_storm: 5,
        scenario_timeout_secs: 120,
        prefix: Some("smoke".into()),
        scenarios: Vec::new(),
    };
    let results = bench::run(args).await.expect("benchmark runs");
    let names: Vec<&str> = results.iter().map(|r| r.scenario).collect();
    assert_eq!(names, bench::scenarios::ALL);
    assert!(names.contains(&"displayname_fanout"));
    let storm = results.iter().find(|r| r.scenario == "join_storm").unwrap();
    assert_eq!(storm.fields["members_correct"], true);
    assert_eq!(storm.fields["final_members"], 6);
    let messages = results.iter().find(|r| r.scenario == "messages").unwrap();
    assert!(messages.fields["events"].as_u64().unwrap() >= 10, "room 0 received its share of the messages");
}
