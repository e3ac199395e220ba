//! `cluster-info`: asks every control-plane address in turn for its view
//! of the cluster and prints one entry per replica, marking the leader and
//! the replicas that do not answer.

use crate::context::Ctx;
use crate::output::print_line;
use anyhow::{bail, Result};
use rkube_api::proto::{ClusterStatusRequest, ClusterStatusResponse};
use std::time::Duration;

/// How long one replica has to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// What one address said.
pub enum Answer {
    Status(ClusterStatusResponse),
    Unreachable(String),
}

/// The replica id known for `addr`, from its own answer or any member list.
fn id_for(addr: &str, answer: &Answer, all: &[(String, Answer)]) -> Option<u64> {
    if let Answer::Status(s) = answer {
        return Some(s.id);
    }
    all.iter().find_map(|(_, a)| match a {
        Answer::Status(s) => s.members.iter().find(|m| m.address == addr).map(|m| m.id),
        Answer::Unreachable(_) => None,
    })
}

/// The report, one or two lines per replica.
pub fn render(answers: &[(String, Answer)]) -> String {
    let mut out = String::new();
    for (addr, a) in answers {
        let who = match id_for(addr, a, answers) {
            Some(id) if id != 0 => format!("Control plane replica {id} at {addr}"),
            _ => format!("Control plane replica at {addr}"),
        };
        match a {
            Answer::Status(s) => {
                let role = if s.leader_id != 0 && s.leader_id == s.id {
                    " (leader)"
                } else if s.leader_id == 0 {
                    " (no leader known)"
                } else {
                    ""
                };
                out.push_str(&format!("{who} is running{role}\n"));
                out.push_str(&format!(
                    "  term {}, leader {}, commit index {}, applied index {}, revision {}, objects {}\n",
                    s.term, s.leader_id, s.commit_index, s.applied_index, s.revision, s.object_count
                ));
            }
            Answer::Unreachable(why) => {
                out.push_str(&format!("{who} is unreachable: {why}\n"));
            }
        }
    }
    out
}

pub async fn run(ctx: &Ctx) -> Result<()> {
    let addrs = ctx.client.addresses().to_vec();
    let mut answers = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let mut stub = ctx.client.stub_at(i);
        let answer =
            match tokio::time::timeout(ASK_TIMEOUT, stub.cluster_status(ClusterStatusRequest {}))
                .await
            {
                Ok(Ok(r)) => Answer::Status(r.into_inner()),
                Ok(Err(s)) => Answer::Unreachable(if s.message().is_empty() {
                    s.code().to_string()
                } else {
                    s.message().to_string()
                }),
                Err(_) => Answer::Unreachable("no answer in time".to_string()),
            };
        answers.push((addr.clone(), answer));
    }
    crate::output::print(&render(&answers));
    if !answers.iter().any(|(_, a)| matches!(a, Answer::Status(_))) {
        bail!("no control-plane replica answered");
    }
    if let Some((_, Answer::Status(s))) = answers
        .iter()
        .find(|(_, a)| matches!(a, Answer::Status(s) if s.leader_id != 0 && s.leader_id == s.id))
    {
        print_line(&format!("Leader: replica {} (term {})", s.id, s.term));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::Member;

    fn status(id: u64, leader: u64) -> Answer {
        Answer::Status(ClusterStatusResponse {
            id,
            leader_id: leader,
            term: 3,
            commit_index: 20,
            applied_index: 19,
            revision: 12,
            object_count: 7,
            members: (1..=3)
                .map(|i| Member {
                    id: i,
                    address: format!("127.0.0.1:700{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    #[test]
    fn report_marks_leader_and_unreachable() {
        let answers = vec![
            ("127.0.0.1:7001".to_string(), status(1, 1)),
            ("127.0.0.1:7002".to_string(), status(2, 1)),
            (
                "127.0.0.1:7003".to_string(),
                Answer::Unreachable("connection refused".into()),
            ),
        ];
        let out = render(&answers);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "Control plane replica 1 at 127.0.0.1:7001 is running (leader)"
        );
        assert_eq!(
            lines[1],
            "  term 3, leader 1, commit index 20, applied index 19, revision 12, objects 7"
        );
        assert_eq!(
            lines[2],
            "Control plane replica 2 at 127.0.0.1:7002 is running"
        );
        assert_eq!(
            lines[4],
            "Control plane replica 3 at 127.0.0.1:7003 is unreachable: connection refused"
        );
    }
}
