//! Setup and the measured scenarios.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::Args;
use crate::client::{Client, User};
use crate::stats::{Latencies, ScenarioResult, round};

pub const ALL: &[&str] = &[
    "send_throughput",
    "send_to_sync_latency",
    "initial_sync",
    "incremental_sync",
    "messages",
    "join_storm",
    "displayname_fanout",
];

/// Users and rooms created before measuring.
pub struct World {
    pub client: Client,
    pub users: Vec<User>,
    /// Each room with the indexes of its members (the first is its creator).
    pub rooms: Vec<(String, Vec<usize>)>,
}

/// Runs `count` jobs on `concurrency` workers; returns each job's latency.
async fn parallel<F, Fut>(count: usize, concurrency: usize, job: F) -> anyhow::Result<Vec<Duration>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (job, next) = (job.clone(), next.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let started = Instant::now();
                job(i).await?;
                latencies.push(started.elapsed());
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(result) = workers.join_next().await {
        all.extend(result??);
    }
    Ok(all)
}

pub async fn setup(args: &Args) -> anyhow::Result<World> {
    let client = Client::new(&args.url);
    let prefix = args.prefix.clone().unwrap_or_default();
    let started = Instant::now();
    let users = Arc::new(tokio::sync::Mutex::new(vec![None; args.users]));
    {
        let (client, users, prefix) = (client.clone(), users.clone(), prefix.clone());
        parallel(args.users, 8, move |i| {
            let (client, users, prefix) = (client.clone(), users.clone(), prefix.clone());
            async move {
                let user = client.register(&format!("{prefix}u{i}"), "bench-password-1").await?;
                users.lock().await[i] = Some(user);
                Ok(())
            }
        })
        .await?;
    }
    let users: Vec<User> = users.lock().await.iter().cloned().map(|u| u.expect("registered")).collect();

    // Room r is created by user 0 (so one user is in every room) and joined by the next
    // `members - 1` users in a rotation.
    let mut rooms = Vec::new();
    for r in 0..args.rooms {
        let room_id =
            client.create_room(&users[0], json!({"preset": "public_chat", "name": format!("bench {r}")})).await?;
        let mut members = vec![0];
        for k in 1..args.members {
            let index = 1 + (r * (args.members - 1) + k - 1) % (args.users - 1).max(1);
            if !members.contains(&index) {
                members.push(index);
            }
        }
        rooms.push((room_id, members));
    }
    let joins: Vec<(String, usize)> =
        rooms.iter().flat_map(|(room, members)| members[1..].iter().map(move |m| (room.clone(), *m))).collect();
    let joins = Arc::new(joins);
    let count = joins.len();
    {
        let (client, users, joins) = (client.clone(), Arc::new(users.clone()), joins.clone());
        parallel(count, 8, move |i| {
            let (client, users, joins) = (client.clone(), users.clone(), joins.clone());
            async move { client.join(&users[joins[i].1], &joins[i].0).await }
        })
        .await?;
    }
    eprintln!(
        "[{}] setup: {} users, {} rooms, {} joins in {:.1}s",
        args.label,
        args.users,
        args.rooms,
        count,
        started.elapsed().as_secs_f64()
    );
    Ok(World { client, users, rooms })
}

pub async fn run(scenario: &str, args: &Args, world: &World) -> anyhow::Result<ScenarioResult> {
    match scenario {
        "send_throughput" => send_throughput(args, world).await,
        "send_to_sync_latency" => send_to_sync_latency(args, world).await,
        "initial_sync" => initial_sync(world).await,
        "incremental_sync" => incremental_sync(world).await,
        "messages" => messages(world).await,
        "join_storm" => join_storm(args, world).await,
        "displayname_fanout" => displayname_fanout(world).await,
        other => anyhow::bail!("unknown scenario {other}"),
    }
}

async fn send_throughput(args: &Args, world: &World) -> anyhow::Result<ScenarioResult> {
    let body = "x".repeat(args.message_bytes);
    let rooms = Arc::new(world.rooms.clone());
    let users = Arc::new(world.users.clone());
    let client = world.client.clone();
    let started = Instant::now();
    let latencies = parallel(args.messages, args.concurrency, move |i| {
        let (client, rooms, users, body) = (client.clone(), rooms.clone(), users.clone(), body.clone());
        async move {
            let (room, members) = &rooms[i % rooms.len()];
            let sender = &users[members[(i / rooms.len()) % members.len()]];
            client.send_text(sender, room, &body).await.map(|_| ())
        }
    })
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let rate = args.messages as f64 / elapsed;
    let latencies = Latencies::new(latencies);
    let summary = format!(
        "{} messages in {elapsed:.2}s = {rate:.0} events/s (p50 {:.2} ms, p99 {:.2} ms)",
        args.messages,
        latencies.percentile_ms(50.0),
        latencies.percentile_ms(99.0)
    );
    Ok(ScenarioResult::new("send_throughput", summary)
        .with("events_per_s", round(rate))
        .with("messages", args.messages)
        .with("concurrency", args.concurrency)
        .with_latencies("latency", &latencies))
}

async fn send_to_sync_latency(args: &Args, world: &World) -> anyhow::Result<ScenarioResult> {
    let (room, members) = &world.rooms[0];
    let sender = world.users[members[0]].clone();
    let receiver = world.users[*members.get(1).context("rooms need two members")?].clone();
    let client = &world.client;
    let mut since = client.sync(&receiver, None, 0).await?["next_batch"].as_str().context("next_batch")?.to_owned();
    let mut samples = Vec::new();
    for i in 0..args.latency_samples {
        let waiting = {
            let (client, receiver, since) = (client.clone(), receiver.clone(), since.clone());
            tokio::spawn(async move { client.sync(&receiver, Some(&since), 30_000).await })
        };
        // Let the receiver's request reach the server and start waiting.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let started = Instant::now();
        let event_id = client.send_text(&sender, room, &format!("ping {i}")).await?;
        let mut response = waiting.await??;
        // A sync may return just before our event lands; follow up until it arrives.
        for _ in 0..10 {
            since = response["next_batch"].as_str().context("next_batch")?.to_owned();
            if response.to_string().contains(&event_id) {
                break;
            }
            response = client.sync(&receiver, Some(&since), 30_000).await?;
        }
        samples.push(started.elapsed());
    }
    let latencies = Latencies::new(samples);
    let summary = format!(
        "{} round trips: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        args.latency_samples,
        latencies.percentile_ms(50.0),
        latencies.percentile_ms(95.0),
        latencies.percentile_ms(99.0)
    );
    Ok(ScenarioResult::new("send_to_sync_latency", summary).with_latencies("latency", &latencies))
}

/// Median of five timings of `f`.
async fn median_of_five<F, Fut>(mut f: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut runs = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        f().await?;
        runs.push(started.elapsed());
    }
    runs.sort();
    Ok(runs[2])
}

async fn initial_sync(world: &World) -> anyhow::Result<ScenarioResult> {
    let user = &world.users[0];
    let response = world.client.sync(user, None, 0).await?;
    let rooms_seen = response["rooms"]["join"].as_object().map_or(0, |m| m.len());
    let median = median_of_five(|| async {
        world.client.sync(user, None, 0).await?;
        Ok(())
    })
    .await?;
    let ms = median.as_secs_f64() * 1000.0;
    Ok(ScenarioResult::new("initial_sync", format!("user in {rooms_seen} rooms: median {ms:.2} ms"))
        .with("median_ms", round(ms))
        .with("rooms", rooms_seen))
}

async fn incremental_sync(world: &World) -> anyhow::Result<ScenarioResult> {
    let user = &world.users[0];
    let (room, _) = &world.rooms[0];
    let mut since = world.client.sync(user, None, 0).await?["next_batch"].as_str().context("next_batch")?.to_owned();
    let mut runs = Vec::new();
    for i in 0..20 {
        world.client.send_text(user, room, &format!("inc {i}")).await?;
        let started = Instant::now();
        let response = world.client.sync(user, Some(&since), 0).await?;
        runs.push(started.elapsed());
        since = response["next_batch"].as_str().context("next_batch")?.to_owned();
    }
    let latencies = Latencies::new(runs);
    let summary = format!("after one new event: p50 {:.2} ms", latencies.percentile_ms(50.0));
    Ok(ScenarioResult::new("incremental_sync", summary).with_latencies("latency", &latencies))
}

/// Back-paginates the whole history of every room the first user is in (one room's few hundred
/// events took tens of milliseconds: too short to measure).
async fn messages(world: &World) -> anyhow::Result<ScenarioResult> {
    let user = &world.users[0];
    let started = Instant::now();
    let mut events = 0;
    for (room, _) in world.rooms.iter().filter(|(_, members)| members.contains(&0)) {
        let mut from: Option<String> = None;
        for _ in 0..10_000 {
            let page = world.client.messages(user, room, from.as_deref(), 100).await?;
            events += page["chunk"].as_array().map_or(0, |c| c.len());
            match page["end"].as_str() {
                Some(end) if page["chunk"].as_array().is_some_and(|c| !c.is_empty()) => from = Some(end.to_owned()),
                _ => break,
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = events as f64 / elapsed;
    Ok(ScenarioResult::new("messages", format!("back-paginated {events} events in {elapsed:.2}s = {rate:.0} events/s"))
        .with("events_per_s", round(rate))
        .with("events", events))
}

async fn join_storm(args: &Args, world: &World) -> anyhow::Result<ScenarioResult> {
    let client = world.client.clone();
    let prefix = args.prefix.clone().unwrap_or_default();
    let joiners = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    {
        let (client, joiners, prefix) = (client.clone(), joiners.clone(), prefix.clone());
        parallel(args.join_storm, 8, move |i| {
            let (client, joiners, prefix) = (client.clone(), joiners.clone(), prefix.clone());
            async move {
                let user = client.register(&format!("{prefix}j{i}"), "bench-password-1").await?;
                joiners.lock().await.push(user);
                Ok(())
            }
        })
        .await?;
    }
    let joiners = Arc::new(joiners.lock().await.clone());
    let room = client.create_room(&world.users[0], json!({"preset": "public_chat", "name": "join storm"})).await?;
    let started = Instant::now();
    {
        let (client, joiners, room) = (client.clone(), joiners.clone(), room.clone());
        parallel(joiners.len(), args.concurrency, move |i| {
            let (client, joiners, room) = (client.clone(), joiners.clone(), room.clone());
            async move { client.join(&joiners[i], &room).await }
        })
        .await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let members = client.joined_members(&world.users[0], &room).await?;
    let rate = joiners.len() as f64 / elapsed;
    let correct = members == joiners.len() + 1;
    Ok(ScenarioResult::new(
        "join_storm",
        format!("{} joins in {elapsed:.2}s = {rate:.0} joins/s; {members} members (correct: {correct})", joiners.len()),
    )
    .with("joins_per_s", round(rate))
    .with("final_members", members)
    .with("members_correct", correct))
}

/// A display name change by the user who is in every room: the server writes a member event into
/// each of them before answering.
async fn displayname_fanout(world: &World) -> anyhow::Result<ScenarioResult> {
    let user = &world.users[0];
    let mut runs = Vec::new();
    for i in 0..5 {
        let started = Instant::now();
        world.client.set_displayname(user, &format!("bench user {i}")).await?;
        runs.push(started.elapsed());
    }
    let latencies = Latencies::new(runs);
    let rooms = world.rooms.len();
    let summary = format!("to {rooms} rooms: median {:.2} ms", latencies.percentile_ms(50.0));
    Ok(ScenarioResult::new("displayname_fanout", summary).with("rooms", rooms).with_latencies("latency", &latencies))
}
