//! `rkube-runtime`: the node's container runtime shim (the default), plus
//! the per-container `monitor` it spawns and the `build-image` tool.

use clap::{Parser, Subcommand};

use rkube_runtime::images::builder::{self, BuildImageArgs};
use rkube_runtime::oci::exec_monitor::{self, ExecMonitorArgs};
use rkube_runtime::oci::monitor;
use rkube_runtime::oci::task::MonitorArgs;
use rkube_runtime::options::ShimOptions;
use rkube_runtime::runtime::Runtime;
use rkube_runtime::server;

#[derive(Parser)]
#[command(
    name = "rkube-runtime",
    version,
    about = "rkube's container runtime shim: CRI-shaped gRPC on a unix socket, runc containers, CNI pod networks",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    shim: ShimOptions,
}

#[derive(Subcommand)]
enum Command {
    /// (internal) Supervises one container; started by the shim.
    #[command(hide = true)]
    Monitor(MonitorArgs),
    /// (internal) Runs one `exec -t` and exits with its exit code.
    #[command(hide = true)]
    ExecMonitor(ExecMonitorArgs),
    /// Builds an image from directories into an OCI archive.
    BuildImage(BuildImageArgs),
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        // The monitor is synchronous and small: no async runtime.
        Some(Command::Monitor(args)) => monitor::run(args),
        Some(Command::ExecMonitor(args)) => exec_monitor::run(args),
        Some(Command::BuildImage(args)) => {
            if let Err(e) = builder::run(&args) {
                eprintln!("rkube-runtime build-image: {e:#}");
                std::process::exit(1);
            }
        }
        None => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("rkube-runtime: starting the async runtime: {e}");
                    std::process::exit(1);
                }
            };
            if let Err(e) = rt.block_on(serve(cli.shim)) {
                tracing::error!("{e:#}");
                std::process::exit(1);
            }
        }
    }
}

async fn serve(opts: ShimOptions) -> anyhow::Result<()> {
    let socket = opts.socket.clone();
    let preload = opts.preload.clone();
    let runtime = Runtime::open(opts).await?;
    if let Some(dir) = preload {
        runtime.preload(&dir).await?;
    }
    server::serve(runtime, &socket, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down; containers keep running");
}
