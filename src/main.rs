//! The `strata` command: a thin CLI over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use strata::config::{Config, LogFormat};

#[derive(Parser)]
#[command(name = "strata", about = "A Kubernetes CRI container runtime", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon, serving CRI on the configured unix socket.
    Serve {
        /// TOML config file; built-in defaults when omitted.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Image helpers.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Print the version.
    Version,
    /// Internal: run an extra process inside a running container (spawned by the daemon).
    #[command(hide = true)]
    Exec {
        #[arg(long)]
        config: PathBuf,
    },
    /// Internal: builds and pins the small mount namespace containers are cloned from.
    #[command(hide = true)]
    MntnsTemplate {
        /// Where the namespace is pinned (a bind mount of its nsfs file).
        #[arg(long)]
        pin: PathBuf,
        /// Directories whose mounts the namespace must hold (the daemon's root and state).
        #[arg(long)]
        keep: Vec<PathBuf>,
    },
    /// Internal: the holder of a pod's namespaces (spawned by the daemon; detaches).
    #[command(hide = true)]
    PodInit {
        /// JSON config file, or `-` for stdin.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the complete default configuration, commented.
    Default,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import an OCI archive (oci-layout tar) or a `docker save` tarball into the image store.
    Import {
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        // Single-threaded helpers: they fork, so they run before any runtime exists.
        Command::PodInit { config } => strata::podinit::pod_init_main(&config),
        Command::Exec { config } => strata::launcher::exec_main(&config),
        Command::MntnsTemplate { pin, keep } => strata::launcher::mntns_template_main(&pin, &keep),
        Command::Version => {
            println!(
                "strata {} (CRI {})",
                strata::RUNTIME_VERSION,
                strata::CRI_API_VERSION
            );
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{}", strata::config::DEFAULT_TOML);
            Ok(())
        }
        Command::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            init_logging(&config);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(strata::server::serve(config))?;
            Ok(())
        }
        Command::Image {
            command: ImageCommand::Import { file, config },
        } => {
            let config = Config::load(config.as_deref())?;
            init_logging(&config);
            let images = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(strata::server::admin::import_cli(config, &file))?;
            for image in images {
                println!("{} {}", image.id, image.repo_tags.join(" "));
            }
            Ok(())
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
