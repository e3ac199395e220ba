//! `version`: the client's version.

use crate::args::VersionArgs;
use crate::output::{print, print_line, printer};
use anyhow::{bail, Result};
use serde_json::json;

pub fn version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

pub fn run(a: &VersionArgs) -> Result<()> {
    let _ = a.client;
    let v = json!({"clientVersion": {"gitVersion": version(), "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH)}});
    match a.output.as_deref() {
        None | Some("") => print_line(&format!("Client Version: {}", version())),
        Some("json") => print_line(&printer::json_pretty(&v)),
        Some("yaml") => print(&serde_yaml::to_string(&v).unwrap_or_default()),
        Some(other) => bail!("--output must be 'yaml' or 'json', not {other:?}"),
    }
    Ok(())
}
