//! rkubectl: the command-line client of rkube. Parses the command line,
//! resolves where the cluster is, and hands over to one command. Exits 0 on
//! success and 1 on any error, which goes to stderr.

mod args;
mod commands;
mod config;
mod context;
mod errors;
mod labels;
mod manifests;
mod output;
mod resources;

use args::{Cli, Command};
use clap::Parser;
use context::Ctx;
use rkube_api::client::Client;
use std::process::ExitCode;

fn init_logging() {
    // Quiet unless RKUBE_LOG asks otherwise; logs go to stderr.
    let filter = tracing_subscriber::EnvFilter::try_from_env("RKUBE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Builds the context of commands that talk to the cluster.
fn connect(cli: &Cli) -> anyhow::Result<Ctx> {
    let settings = config::resolve(cli.server.as_deref(), cli.kubeconfig.as_deref())?;
    let client = Client::connect(&settings)
        .map_err(anyhow::Error::msg)?
        // Long enough to ride out an election, short enough to report a
        // control plane that is down.
        .with_failover_timeout(std::time::Duration::from_secs(8));
    errors::set_servers(&settings.servers.join(","), settings.tls.is_none());
    let explicit = cli.namespace.as_deref().is_some_and(|n| !n.is_empty());
    let namespace = cli
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or(settings.namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    Ok(Ctx {
        client,
        connect: settings,
        namespace,
        explicit_namespace: explicit,
        all_namespaces: cli.all_namespaces,
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Version(a) => return commands::version::run(a),
        Command::ApiResources(a) => return commands::api_resources::run(a),
        _ => {}
    }
    let ctx = connect(&cli)?;
    match &cli.command {
        Command::Create(a) => commands::create::run(&ctx, a).await,
        Command::Apply(a) => commands::apply::run(&ctx, a).await,
        Command::Get(a) => commands::get::run(&ctx, a).await,
        Command::Describe(a) => commands::describe::run(&ctx, a).await,
        Command::Delete(a) => commands::delete::run(&ctx, a).await,
        Command::Scale(a) => commands::scale::run(&ctx, a).await,
        Command::Label(a) => commands::label::run(&ctx, a).await,
        Command::Logs(a) => commands::logs::run(&ctx, a).await,
        Command::Exec(a) => commands::exec::run(&ctx, a).await,
        Command::ClusterInfo => commands::cluster_info::run(&ctx).await,
        Command::Member(m) => commands::member::run(&ctx, m).await,
        Command::Version(_) | Command::ApiResources(_) => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::eprint_line(&format!("error: cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `exec`: the remote command's exit code is ours, as in kubectl.
            if let Some(exit) = e.downcast_ref::<commands::exec::RemoteExit>() {
                output::eprint_line(&exit.to_string());
                return ExitCode::from(exit.code());
            }
            if let Some(text) = errors::render(&e) {
                output::eprint_line(&text);
            }
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("rkubectl").chain(args.iter().copied()))
    }

    #[test]
    fn global_flags_go_anywhere() {
        let c = parse(&["get", "pods", "-n", "kube-system", "-s", "a:1,b:2"]).unwrap();
        assert_eq!(c.namespace.as_deref(), Some("kube-system"));
        assert_eq!(c.server.as_deref(), Some("a:1,b:2"));
        let c = parse(&["-A", "get", "pods"]).unwrap();
        assert!(c.all_namespaces);
    }

    #[test]
    fn get_flags_parse_like_kubectl() {
        let c = parse(&[
            "get",
            "po",
            "-owide",
            "-l",
            "app=nginx-app",
            "--show-labels",
        ])
        .unwrap();
        let Command::Get(g) = c.command else {
            panic!("not get")
        };
        assert_eq!(g.output.as_deref(), Some("wide"));
        assert_eq!(g.selector.as_deref(), Some("app=nginx-app"));
        assert!(g.show_labels);
        let c = parse(&["get", "pod", "nginx-pod", "--output=yaml"]).unwrap();
        let Command::Get(g) = c.command else {
            panic!("not get")
        };
        assert_eq!(g.args, ["pod", "nginx-pod"]);
        assert_eq!(g.output.as_deref(), Some("yaml"));
        assert!(parse(&["get"]).is_err());
    }

    #[test]
    fn delete_cascade_and_wait() {
        let c = parse(&["delete", "rc", "x", "--cascade=orphan", "--wait=false"]).unwrap();
        let Command::Delete(d) = c.command else {
            panic!("not delete")
        };
        assert_eq!(d.cascade.as_deref(), Some("orphan"));
        assert!(!d.wait);
        let c = parse(&["delete", "--cascade", "-f", "x.yml"]).unwrap();
        let Command::Delete(d) = c.command else {
            panic!("not delete")
        };
        assert_eq!(d.cascade.as_deref(), Some("background"));
        assert!(d.wait);
        assert_eq!(d.files, ["x.yml"]);
    }

    #[test]
    fn scale_and_label_parse() {
        let c = parse(&["scale", "rc", "nginx-rc", "--replicas=6"]).unwrap();
        let Command::Scale(s) = c.command else {
            panic!("not scale")
        };
        assert_eq!(s.replicas, 6);
        assert!(parse(&["scale", "rc", "nginx-rc"]).is_err());
        let c = parse(&["label", "nodes", "wn1", "wn2", "node=server", "--overwrite"]).unwrap();
        let Command::Label(l) = c.command else {
            panic!("not label")
        };
        assert_eq!(l.args, ["nodes", "wn1", "wn2", "node=server"]);
        assert!(l.overwrite);
        let c = parse(&["create", "-f", "a.yml", "-f", "b.yml"]).unwrap();
        let Command::Create(f) = c.command else {
            panic!("not create")
        };
        assert_eq!(f.files, ["a.yml", "b.yml"]);
    }
}
