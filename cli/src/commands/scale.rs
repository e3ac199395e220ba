//! `scale`: set the replicas of ReplicationControllers and ReplicaSets,
//! named on the command line or in `-f` files; `--current-replicas` is a
//! precondition.

use super::{kind_of, load_or_report};
use crate::args::ScaleArgs;
use crate::context::Ctx;
use crate::errors::{self, Outcome};
use crate::output::print_line;
use crate::resources::{object_ref, parse_targets};
use anyhow::{anyhow, bail, Result};
use rkube_api::kinds::Kind;
use rkube_api::proto::object::Kind as Body;
use rkube_api::proto::ScaleRequest;

/// The replicas an object's spec asks for (1 when unset).
fn spec_replicas(o: &rkube_api::Object) -> Option<i32> {
    match o.kind.as_ref() {
        Some(Body::ReplicationController(rc)) => {
            Some(rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
        }
        Some(Body::ReplicaSet(rs)) => Some(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
        _ => None,
    }
}

async fn scale_one(ctx: &Ctx, kind: Kind, ns: &str, name: &str, a: &ScaleArgs) -> Result<()> {
    if !matches!(kind, Kind::ReplicationController | Kind::ReplicaSet) {
        bail!(
            "cannot scale {}: only replicationcontrollers and replicasets can be scaled",
            kind.plural()
        );
    }
    let mut resource_version = String::new();
    if let Some(expected) = a.current_replicas {
        let cur = ctx
            .client
            .get(kind.name(), ns, name)
            .await
            .map_err(errors::server)?;
        let have =
            spec_replicas(&cur).ok_or_else(|| anyhow!("{} is not scalable", kind.plural()))?;
        if have != expected {
            bail!("Expected replicas to be {expected}, was {have}");
        }
        resource_version = cur.resource_version().to_string();
    }
    let req = ScaleRequest {
        kind: kind.name().to_string(),
        namespace: ns.to_string(),
        name: name.to_string(),
        replicas: a.replicas,
        resource_version,
    };
    ctx.client
        .call(|mut c| {
            let req = req.clone();
            async move { c.update_scale(req).await }
        })
        .await
        .map_err(errors::server)?;
    print_line(&format!("{} scaled", object_ref(kind, name)));
    Ok(())
}

pub async fn run(ctx: &Ctx, a: &ScaleArgs) -> Result<()> {
    if a.replicas < 0 {
        bail!(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
        );
    }
    let mut items: Vec<(Kind, String, String)> = Vec::new();
    let mut outcome = Outcome::new();
    if !a.files.is_empty() {
        if !a.args.is_empty() {
            bail!("when paths are provided as input, you may not specify resources by argument as well");
        }
        for l in load_or_report(&a.files, false)? {
            let mut obj = l.object;
            if let Err(e) = ctx.place(&mut obj) {
                outcome.fail(&e);
                continue;
            }
            items.push((
                kind_of(&obj)?,
                obj.namespace().to_string(),
                obj.name().to_string(),
            ));
        }
    } else {
        let targets = parse_targets(&a.args)?;
        for t in targets {
            if t.names.is_empty() {
                bail!("resource(s) were provided, but no name was specified");
            }
            let ns = ctx.object_namespace(t.kind);
            items.extend(t.names.iter().map(|n| (t.kind, ns.clone(), n.clone())));
        }
    }
    for (kind, ns, name) in items {
        if let Err(e) = scale_one(ctx, kind, &ns, &name, a).await {
            outcome.fail(&e);
        }
    }
    outcome.finish()
}
