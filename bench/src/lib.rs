//! A load generator for Matrix homeservers. It speaks only the client-server API, so it can
//! drive any server by URL. Each scenario prints one JSON line and a human summary.
//!
//! Every loop is bounded in count and time, and the target must be a loopback address.

pub mod client;
pub mod scenarios;
pub mod stats;

use std::time::Duration;

#[derive(clap::Parser, Debug, Clone)]
#[command(name = "myelin-bench", about = "Benchmark a Matrix homeserver over the client-server API")]
pub struct Args {
    /// Base URL of the homeserver (loopback only), e.g. http://127.0.0.1:8008
    #[arg(long, default_value = "http://127.0.0.1:8008")]
    pub url: String,
    /// Label for the results (e.g. myelin-sqlite).
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Users to register.
    #[arg(long, default_value_t = 50)]
    pub users: usize,
    /// Rooms to create.
    #[arg(long, default_value_t = 20)]
    pub rooms: usize,
    /// Members per room (including its creator).
    #[arg(long, default_value_t = 10)]
    pub members: usize,
    /// Messages sent in the throughput scenario.
    #[arg(long, default_value_t = 5_000)]
    pub messages: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Round trips measured for send→sync latency.
    #[arg(long, default_value_t = 200)]
    pub latency_samples: usize,
    /// Users joining one room in the join storm.
    #[arg(long, default_value_t = 200)]
    pub join_storm: usize,
    /// Give up on any scenario after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub scenario_timeout_secs: u64,
    /// Prefix for generated user names, so runs against one server do not collide.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Run only these scenarios (comma-separated, still in the usual order), e.g. to profile one.
    /// Later scenarios see what earlier ones left: initial sync reads the throughput run's history.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
}

/// Sets up users and rooms, then runs every scenario, printing each result as it completes.
/// Returns the results of the scenarios that finished.
pub async fn run(mut args: Args) -> anyhow::Result<Vec<stats::ScenarioResult>> {
    ensure_loopback(&args.url)?;
    if args.members > args.users {
        anyhow::bail!("--members cannot exceed --users");
    }
    let prefix = args.prefix.clone().unwrap_or_else(|| format!("b{}", std::process::id()));
    args.prefix = Some(prefix);
    if let Some(unknown) = args.scenarios.iter().find(|s| !scenarios::ALL.contains(&s.as_str())) {
        anyhow::bail!("unknown scenario {unknown} (known: {})", scenarios::ALL.join(", "));
    }
    let timeout = Duration::from_secs(args.scenario_timeout_secs);
    let world = tokio::time::timeout(timeout, scenarios::setup(&args)).await??;
    let mut results = Vec::new();
    let selected =
        scenarios::ALL.iter().filter(|s| args.scenarios.is_empty() || args.scenarios.iter().any(|a| a == *s));
    for scenario in selected {
        match tokio::time::timeout(timeout, scenarios::run(scenario, &args, &world)).await {
            Ok(Ok(result)) => {
                result.print(&args.label);
                results.push(result);
            }
            Ok(Err(e)) => eprintln!("{scenario}: failed: {e:#}"),
            Err(_) => eprintln!("{scenario}: timed out after {}s", timeout.as_secs()),
        }
    }
    Ok(results)
}

/// Load is only ever sent to this machine.
fn ensure_loopback(url: &str) -> anyhow::Result<()> {
    let host = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or_default();
    let loopback = host == "localhost" || host.starts_with("127.") || host == "[" || url.contains("[::1]");
    if !loopback {
        anyhow::bail!("refusing to load {host}: the benchmark only targets loopback addresses");
    }
    Ok(())
}
