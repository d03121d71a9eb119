//! strata-conformance: CRI behaviour specs and benchmarks against any CRI v1
//! runtime endpoint, using the independent `k8s-cri` bindings.

mod bench;
mod client;
mod registry;
mod specs;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// CRI endpoint, e.g. unix:///run/strata/strata.sock.
    #[arg(long, global = true, default_value = "unix:///run/strata/strata.sock")]
    endpoint: String,
    /// Loopback registry (host:port, plain HTTP) holding critest's test images.
    #[arg(long, global = true)]
    registry: Option<String>,
    /// Run only specs whose name contains this.
    #[arg(long, global = true)]
    filter: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the behaviour specs (the default).
    Specs,
    /// Run a benchmark.
    Bench(bench::BenchArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command.unwrap_or(Command::Specs) {
        Command::Specs => {
            let cri = client::Cri::connect(&cli.endpoint).await?;
            let summary = specs::run(cri, cli.registry, cli.filter.as_deref()).await;
            println!("{summary}");
            Ok(if summary.failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Bench(args) => {
            bench::run(&cli.endpoint, args).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
