//! `myelin-bench`: see the library documentation and `--help`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = bench::Args::parse();
    let wanted = if args.scenarios.is_empty() { bench::scenarios::ALL.len() } else { args.scenarios.len() };
    let results = bench::run(args).await?;
    if results.len() < wanted {
        anyhow::bail!("{} of {wanted} scenarios did not complete", wanted - results.len());
    }
    Ok(())
}
