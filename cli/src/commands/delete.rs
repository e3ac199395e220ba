//! `delete`: by name, by `-l`, `--all`, or the objects named in `-f` files;
//! `--cascade` picks the propagation policy; `--grace-period`, `--now` and
//! `--force` the grace period, as kubectl; by default waits until the
//! objects are gone (`--wait=false` does not; `--timeout` 0 waits a week,
//! as kubectl).

use super::{kind_of, label_selector, load_or_report};
use crate::args::DeleteArgs;
use crate::context::Ctx;
use crate::errors::{self, Outcome};
use crate::output::{eprint_line, print_line};
use crate::resources::{parse_targets, quoted_ref};
use anyhow::{anyhow, bail, Result};
use rkube_api::kinds::Kind;
use rkube_api::proto::DeleteRequest;
use std::time::{Duration, Instant};
use tonic::Code;

/// `--cascade` as a propagation policy.
pub fn propagation_policy(cascade: Option<&str>) -> Result<&'static str> {
    match cascade.map(|c| c.trim().to_ascii_lowercase()).as_deref() {
        None | Some("background") | Some("true") => Ok("Background"),
        Some("foreground") => Ok("Foreground"),
        Some("orphan") | Some("false") => Ok("Orphan"),
        Some(other) => bail!(
            "invalid cascade value ({other}). Must be \"background\", \"foreground\", or \"orphan\""
        ),
    }
}

/// kubectl's warning for `--force --grace-period=0`.
pub const FORCE_WARNING: &str = "Warning: Immediate deletion does not wait for confirmation that \
the running resource has been terminated. The resource may continue to run on the cluster \
indefinitely.";

/// How long `--timeout 0` waits, as kubectl: a week.
pub const FOREVER: Duration = Duration::from_secs(168 * 3600);

/// The grace period to send (None: the object's own), as kubectl works it
/// out from `--grace-period` (-1 by default), `--now` and `--force`.
pub fn effective_grace(grace_period: i64, now: bool, force: bool) -> Result<Option<i64>> {
    let mut grace = grace_period;
    if now {
        if grace != -1 {
            bail!("--now and --grace-period cannot be specified together");
        }
        grace = 1;
    }
    if grace == 0 && !force {
        // As kubectl: --grace-period=0 alone means 1, so that data is not
        // lost by accident; --force bypasses this.
        grace = 1;
    }
    if force && grace < 0 {
        grace = 0;
    }
    if force && grace > 0 {
        bail!("--force and --grace-period greater than 0 cannot be specified together");
    }
    Ok((grace >= 0).then_some(grace))
}

/// Parses `30s`, `2m`, `1h`, `500ms` or plain seconds.
pub fn parse_timeout(s: &str) -> Result<Duration> {
    let s = s.trim();
    let bad = || anyhow!("invalid timeout {s:?}: use e.g. 30s, 2m or 1h");
    let (num, mult_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1u64)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1000)
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    Ok(Duration::from_millis(n.saturating_mul(mult_ms)))
}

/// One object to delete.
#[derive(Debug, Clone)]
struct Victim {
    kind: Kind,
    namespace: String,
    name: String,
}

/// An object whose deletion is still under way.
struct Pending {
    victim: Victim,
    uid: String,
}

async fn victims(ctx: &Ctx, a: &DeleteArgs, outcome: &mut Outcome) -> Result<Vec<Victim>> {
    let label_sel = label_selector(a.selector.as_deref())?;
    if !a.files.is_empty() {
        if !a.args.is_empty() {
            bail!("when paths are provided as input, you may not specify resources by argument as well");
        }
        let loaded = load_or_report(&a.files, a.recursive)?;
        let mut out = Vec::new();
        for l in loaded {
            let mut obj = l.object;
            if let Err(e) = ctx.place(&mut obj) {
                outcome.fail(&e);
                continue;
            }
            out.push(Victim {
                kind: kind_of(&obj)?,
                namespace: obj.namespace().to_string(),
                name: obj.name().to_string(),
            });
        }
        return Ok(out);
    }
    if a.args.is_empty() {
        bail!("You must provide one or more resources by argument or filename.");
    }
    let targets = parse_targets(&a.args)?;
    let named = targets.iter().any(|t| !t.names.is_empty());
    let selecting = !label_sel.is_empty() || a.all;
    if named && selecting {
        bail!("name cannot be provided when a selector is specified");
    }
    if !named && !selecting {
        bail!("resource(s) were provided, but no name was specified");
    }
    let mut out = Vec::new();
    for t in &targets {
        if named {
            let ns = ctx.object_namespace(t.kind);
            out.extend(t.names.iter().map(|n| Victim {
                kind: t.kind,
                namespace: ns.clone(),
                name: n.clone(),
            }));
            continue;
        }
        match ctx
            .list(t.kind, &ctx.list_namespace(t.kind), &label_sel, "")
            .await
        {
            Ok(list) => out.extend(list.items.iter().map(|o| Victim {
                kind: t.kind,
                namespace: o.namespace().to_string(),
                name: o.name().to_string(),
            })),
            Err(e) => outcome.fail(&e),
        }
    }
    if out.is_empty() && !outcome.failed() {
        eprint_line(&ctx.nothing_found(targets.iter().any(|t| t.kind.namespaced())));
    }
    Ok(out)
}

/// Waits until each pending object is gone (or replaced by a new one).
async fn wait_gone(ctx: &Ctx, pending: Vec<Pending>, timeout: Duration, outcome: &mut Outcome) {
    let deadline = Instant::now() + timeout;
    for p in pending {
        let v = &p.victim;
        loop {
            match ctx.client.get(v.kind.name(), &v.namespace, &v.name).await {
                Err(s) if s.code() == Code::NotFound => break,
                Ok(o) if o.metadata().is_some_and(|m| m.uid != p.uid) => break,
                Err(s) if s.code() != Code::Unavailable => {
                    outcome.fail_status(&s);
                    break;
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                outcome.fail(&anyhow!(
                    "timed out waiting for the condition on {}/{}",
                    v.kind.plural(),
                    v.name
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub async fn run(ctx: &Ctx, a: &DeleteArgs) -> Result<()> {
    let policy = propagation_policy(a.cascade.as_deref())?;
    let timeout = match parse_timeout(&a.timeout)? {
        Duration::ZERO => FOREVER,
        t => t,
    };
    let grace = effective_grace(a.grace_period, a.now, a.force)?;
    if grace == Some(0) {
        eprint_line(FORCE_WARNING);
    }
    let operation = if grace == Some(0) {
        "force deleted"
    } else {
        "deleted"
    };
    let mut outcome = Outcome::new();
    let victims = victims(ctx, a, &mut outcome).await?;
    let mut pending = Vec::new();
    for v in victims {
        let req = DeleteRequest {
            kind: v.kind.name().to_string(),
            namespace: v.namespace.clone(),
            name: v.name.clone(),
            propagation_policy: policy.to_string(),
            preconditions: None,
            grace_period_seconds: grace,
        };
        match ctx.client.delete(req).await {
            Ok(gone) => {
                print_line(&format!("{} {operation}", quoted_ref(v.kind, &v.name)));
                let meta = gone.metadata().cloned().unwrap_or_default();
                if !meta.deletion_timestamp.is_empty() {
                    pending.push(Pending {
                        victim: v,
                        uid: meta.uid,
                    });
                }
            }
            Err(s) if s.code() == Code::NotFound && a.ignore_not_found => {}
            Err(s) => outcome.fail(&errors::server(s)),
        }
    }
    if a.wait && !pending.is_empty() {
        wait_gone(ctx, pending, timeout, &mut outcome).await;
    }
    outcome.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cascade_values_map_to_policies() {
        assert_eq!(propagation_policy(None).unwrap(), "Background");
        assert_eq!(
            propagation_policy(Some("background")).unwrap(),
            "Background"
        );
        assert_eq!(propagation_policy(Some("true")).unwrap(), "Background");
        assert_eq!(
            propagation_policy(Some("foreground")).unwrap(),
            "Foreground"
        );
        assert_eq!(propagation_policy(Some("orphan")).unwrap(), "Orphan");
        assert_eq!(propagation_policy(Some("false")).unwrap(), "Orphan");
        assert!(propagation_policy(Some("sideways")).is_err());
    }

    #[test]
    fn grace_periods_as_kubectl() {
        assert_eq!(effective_grace(-1, false, false).unwrap(), None);
        assert_eq!(effective_grace(10, false, false).unwrap(), Some(10));
        // 0 without --force means 1.
        assert_eq!(effective_grace(0, false, false).unwrap(), Some(1));
        assert_eq!(effective_grace(0, false, true).unwrap(), Some(0));
        assert_eq!(effective_grace(-1, false, true).unwrap(), Some(0));
        assert_eq!(effective_grace(-1, true, false).unwrap(), Some(1));
        assert!(effective_grace(5, true, false).is_err());
        assert!(effective_grace(5, false, true)
            .unwrap_err()
            .to_string()
            .contains("--force and --grace-period greater than 0"));
    }

    #[test]
    fn delete_flags_parse() {
        use crate::args::{Cli, Command};
        use clap::Parser;
        let parse = |args: &[&str]| {
            let c = Cli::try_parse_from(std::iter::once("rkubectl").chain(args.iter().copied()))
                .unwrap();
            match c.command {
                Command::Delete(d) => d,
                _ => panic!("not delete"),
            }
        };
        let d = parse(&["delete", "pod", "x"]);
        assert_eq!((d.grace_period, d.force, d.wait), (-1, false, true));
        assert_eq!(parse_timeout(&d.timeout).unwrap(), Duration::ZERO);
        let d = parse(&["delete", "pod", "x", "--grace-period=0", "--force"]);
        assert_eq!((d.grace_period, d.force), (0, true));
        let d = parse(&[
            "delete",
            "pod",
            "x",
            "--grace-period",
            "-1",
            "--timeout=30s",
        ]);
        assert_eq!(d.grace_period, -1);
        assert_eq!(parse_timeout(&d.timeout).unwrap(), Duration::from_secs(30));
    }

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_timeout("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_timeout("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_timeout("5").unwrap(), Duration::from_secs(5));
        assert!(parse_timeout("soon").is_err());
    }
}
