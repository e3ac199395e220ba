//! `member list|add|remove`: the control plane's membership (etcdctl's
//! shape; Kubernetes has no such verbs). Changes go to the leader: a
//! follower answers Unavailable and the client moves on to the next
//! address until the leader takes it.

use crate::args::MemberCommand;
use crate::context::Ctx;
use crate::errors;
use crate::output::{print, print_line};
use anyhow::Result;
use rkube_api::proto::{ClusterStatusRequest, Member, MemberAddRequest, MemberRemoveRequest};

/// The member table: ID ADDRESS ROLE LEADER REACHABLE.
pub fn render(members: &[Member]) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "ADDRESS".to_string(),
        "ROLE".to_string(),
        "LEADER".to_string(),
        "REACHABLE".to_string(),
    ]];
    for m in members {
        rows.push([
            m.id.to_string(),
            m.address.clone(),
            if m.learner { "learner" } else { "voter" }.to_string(),
            if m.is_leader { "yes" } else { "no" }.to_string(),
            if m.reachable { "yes" } else { "unknown" }.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

pub async fn run(ctx: &Ctx, cmd: &MemberCommand) -> Result<()> {
    match cmd {
        MemberCommand::List => {
            let st = ctx
                .client
                .call_idempotent(
                    |mut c| async move { c.cluster_status(ClusterStatusRequest {}).await },
                )
                .await
                .map_err(errors::server)?;
            print(&render(&st.members));
        }
        MemberCommand::Add { id, address } => {
            let (id, address) = (*id, address.clone());
            let r = ctx
                .client
                .call(|mut c| {
                    let address = address.clone();
                    async move { c.member_add(MemberAddRequest { id, address }).await }
                })
                .await
                .map_err(errors::server)?;
            print_line(&format!(
                "member {id} added at {address} (voter from log index {})",
                r.index
            ));
            print(&render(&r.members));
        }
        MemberCommand::Remove { id } => {
            let id = *id;
            let r = ctx
                .client
                .call(|mut c| async move { c.member_remove(MemberRemoveRequest { id }).await })
                .await
                .map_err(errors::server)?;
            print_line(&format!("member {id} removed at log index {}", r.index));
            print(&render(&r.members));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_roles() {
        let out = render(&[
            Member {
                id: 1,
                address: "10.0.0.1:7000".into(),
                is_leader: true,
                reachable: true,
                learner: false,
            },
            Member {
                id: 4,
                address: "10.0.0.4:7000".into(),
                is_leader: false,
                reachable: false,
                learner: true,
            },
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "ID   ADDRESS         ROLE      LEADER   REACHABLE"
        );
        assert_eq!(lines[1], "1    10.0.0.1:7000   voter     yes      yes");
        assert_eq!(lines[2], "4    10.0.0.4:7000   learner   no       unknown");
    }
}
