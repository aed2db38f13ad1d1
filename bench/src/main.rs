//! `myelin-bench`: see the library documentation and `--help`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let results = bench::run(bench::Args::parse()).await?;
    if results.len() < bench::scenarios::ALL.len() {
        anyhow::bail!(
            "{} of {} scenarios did not complete",
            bench::scenarios::ALL.len() - results.len(),
            bench::scenarios::ALL.len()
        );
    }
    Ok(())
}
