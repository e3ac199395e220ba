//! rkube-pki: makes the cluster CA and every credential issued from it.

use clap::{Parser, Subcommand};
use rkube_pki::{bootstrap, Plan};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "rkube-pki",
    about = "rkube's cluster PKI: CA, certificates, tokens, kubeconfigs"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Makes what is missing in DIR (the CA first) and rewrites the
    /// kubeconfigs; an existing CA, certificate, key or token is kept.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Control-plane replicas as ID or ID=SAN[+SAN...] (addresses or
        /// DNS names the replica is also reached by), comma separated.
        #[arg(long, default_value = "")]
        replicas: String,
        /// Node names, comma separated.
        #[arg(long, default_value = "")]
        nodes: String,
        /// The replicas' host:port, comma separated (for the kubeconfigs).
        #[arg(long)]
        servers: String,
    },
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Init {
            dir,
            replicas,
            nodes,
            servers,
        } => {
            let mut plan = Plan {
                nodes: list(&nodes),
                servers: list(&servers),
                ..Default::default()
            };
            for r in list(&replicas) {
                let (id, sans) = r.split_once('=').unwrap_or((r.as_str(), ""));
                let id: u64 = id
                    .parse()
                    .map_err(|_| anyhow::anyhow!("replica {r:?}: the id must be a number"))?;
                plan.replicas.push((
                    id,
                    sans.split('+')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                ));
            }
            bootstrap(&dir, &plan)?;
            println!("PKI ready in {}", dir.display());
            Ok(())
        }
    }
}
