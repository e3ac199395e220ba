//! Control-plane membership changes, one at a time, made by the leader.
//!
//! Add: the new replica enters as a learner (it receives the log, starting
//! from a snapshot, but does not vote), the leader waits until it has caught
//! up, then promotes it to voter. Adding an empty voter directly would make a
//! quorum that counts a member unable to acknowledge yet. Remove: the
//! replica leaves the configuration; its id is recorded as removed and never
//! reused. A leader asked to remove itself hands leadership to the most
//! up-to-date voter first and answers `Unavailable` (nothing done), so the
//! client retries against the new leader.
//!
//! Every change carries the full member address list in its context, so
//! every replica (and every snapshot) knows where the members are.

use crate::handlers::{ApiError, ApiResult, Handlers};
use crate::raft_node::RaftStatus;
use prost::Message as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use rkube_api::proto::internal::{MemberAddress, MembershipContext};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a new learner may take to catch up before the add gives up
/// (it stays a learner; adding it again resumes).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a change is refused while another is under way.
pub(crate) const CHANGE_IN_PROGRESS: &str =
    "another membership change is in progress; one change at a time: retry when it has been \
     applied";

/// How long a change waits for an earlier one (or a new leader's
/// uncommitted log) to apply before it is refused.
const PENDING_WAIT: Duration = Duration::from_secs(3);

/// A member as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub id: u64,
    pub address: String,
    pub learner: bool,
    pub is_leader: bool,
    pub reachable: bool,
}

/// The members in `st` (voters and learners), in id order.
pub fn members_of(st: &RaftStatus) -> Vec<MemberView> {
    let mut ids: Vec<(u64, bool)> = st
        .voters
        .iter()
        .map(|id| (*id, false))
        .chain(st.learners.iter().map(|id| (*id, true)))
        .collect();
    ids.sort_unstable();
    ids.into_iter()
        .map(|(id, learner)| MemberView {
            id,
            address: st.members.get(&id).cloned().unwrap_or_default(),
            learner,
            is_leader: id == st.leader_id,
            reachable: st.peers_active.get(&id).copied().unwrap_or(id == st.id),
        })
        .collect()
}

fn change(kind: ConfChangeType, id: u64, members: &BTreeMap<u64, String>) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(kind);
    single.node_id = id;
    let mut cc = ConfChangeV2::default();
    cc.set_changes(protobuf::RepeatedField::from_vec(vec![single]));
    let ctx = MembershipContext {
        members: members
            .iter()
            .map(|(id, address)| MemberAddress {
                id: *id,
                address: address.clone(),
            })
            .collect(),
    };
    cc.set_context(ctx.encode_to_vec().into());
    cc
}

/// `host:port` with a numeric port and a non-empty host.
fn check_address(address: &str) -> ApiResult<()> {
    let bad = |why: &str| {
        Err(ApiError::Invalid(format!(
            "address: Invalid value: {address:?}: {why} (expected HOST:PORT)"
        )))
    };
    let Some((host, port)) = address.rsplit_once(':') else {
        return bad("no port");
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return bad("no host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => bad("the port must be a number from 1 to 65535"),
    }
}

/// A follower's answer to a membership change (or any leader-only
/// request).
pub(crate) fn not_leader(leader: u64) -> ApiError {
    // Unavailable promises nothing was done: clients move to another
    // replica, and eventually reach the leader.
    if leader == 0 {
        ApiError::Unavailable(
            "no control-plane leader is known yet; membership changes are made by the leader: \
             retry"
                .into(),
        )
    } else {
        ApiError::Unavailable(format!(
            "this replica is not the leader; membership changes are made by the leader \
             (replica {leader}): ask it"
        ))
    }
}

impl Handlers {
    /// The configuration as this replica sees it.
    pub async fn members(&self) -> ApiResult<Vec<MemberView>> {
        let st = self.store().status().await?;
        Ok(members_of(&st))
    }

    /// The right to make a membership change; refused while another runs.
    fn one_change_at_a_time(&self) -> ApiResult<tokio::sync::OwnedMutexGuard<()>> {
        self.membership
            .clone()
            .try_lock_owned()
            .map_err(|_| ApiError::FailedPrecondition(CHANGE_IN_PROGRESS.into()))
    }

    async fn leader_status(&self) -> ApiResult<RaftStatus> {
        // A configuration change proposed and not yet applied blocks the
        // next. A new leader also counts its whole uncommitted log as such
        // until it has applied it (raft-rs cannot tell what is in it), which
        // takes a moment after every election: wait that out.
        let deadline = Instant::now() + PENDING_WAIT;
        loop {
            let st = self.store().status().await?;
            if st.leader_id != st.id {
                return Err(not_leader(st.leader_id));
            }
            if !st.pending_conf {
                return Ok(st);
            }
            if Instant::now() > deadline {
                return Err(ApiError::FailedPrecondition(CHANGE_IN_PROGRESS.into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Adds replica `id` at `address`: as a learner, then, once caught up,
    /// as a voter. Answers the configuration after the change and the index
    /// of the promotion.
    pub async fn member_add(&self, id: u64, address: &str) -> ApiResult<(Vec<MemberView>, u64)> {
        if id == 0 {
            return Err(ApiError::Invalid(
                "id: Invalid value: 0: replica ids are positive numbers".into(),
            ));
        }
        check_address(address)?;
        let st = self.leader_status().await?;
        let _one = self.one_change_at_a_time()?;
        let removed_at = self.store().state().removed().get(&id).copied();
        if let Some(index) = removed_at {
            return Err(ApiError::FailedPrecondition(format!(
                "replica id {id} belonged to a replica removed at log index {index}; ids are \
                 never reused: pick a new id"
            )));
        }
        if st.voters.contains(&id) {
            return Err(ApiError::AlreadyExists(format!(
                "replica {id} is already a voting member (at {})",
                st.members.get(&id).map(String::as_str).unwrap_or("?")
            )));
        }
        let mut members = st.members.clone();
        if let Some((other, _)) = members.iter().find(|(i, a)| **i != id && *a == address) {
            return Err(ApiError::AlreadyExists(format!(
                "address {address} already belongs to replica {other}"
            )));
        }
        members.insert(id, address.to_string());
        let mut added_at = 0;
        if !st.learners.contains(&id) {
            added_at = self
                .store()
                .conf_change(change(ConfChangeType::AddLearnerNode, id, &members))
                .await?;
            tracing::info!(id, address, index = added_at, "replica added as a learner");
        }
        // Wait for the learner to hold everything committed so far (it
        // starts from the snapshot taken at the change).
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        loop {
            let st = self.store().status().await?;
            if st.leader_id != st.id {
                return Err(ApiError::OutcomeUnknown(format!(
                    "leadership changed while replica {id} was catching up as a learner; it is a \
                     learner, not a voter: run member add again to promote it"
                )));
            }
            let matched = st.matched.get(&id).copied().unwrap_or(0);
            if matched >= added_at && matched + 64 >= st.commit {
                break;
            }
            if Instant::now() > deadline {
                // Not Unavailable: something was done (it is a learner).
                return Err(ApiError::FailedPrecondition(format!(
                    "replica {id} did not catch up within {CATCH_UP_TIMEOUT:?} (it holds the \
                     log up to index {matched} of {}); it stays a learner: check that it runs \
                     with --join and that {address} reaches it, then run member add again, or \
                     remove it",
                    st.commit
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let index = self
            .store()
            .conf_change(change(ConfChangeType::AddNode, id, &members))
            .await?;
        tracing::info!(id, index, "learner promoted to voter");
        Ok((self.members().await?, index))
    }

    /// Removes replica `id` for good.
    pub async fn member_remove(&self, id: u64) -> ApiResult<(Vec<MemberView>, u64)> {
        let st = self.leader_status().await?;
        let _one = self.one_change_at_a_time()?;
        let voter = st.voters.contains(&id);
        if !voter && !st.learners.contains(&id) {
            return Err(ApiError::NotFound(format!(
                "replica {id} is not a member (members: {:?})",
                st.members.keys().collect::<Vec<_>>()
            )));
        }
        if voter && st.voters.len() == 1 {
            return Err(ApiError::FailedPrecondition(format!(
                "replica {id} is the only voter; removing it would leave no cluster"
            )));
        }
        if id == st.id {
            // Hand leadership to the most up-to-date other voter, then let the
            // client retry there (nothing was done here).
            let to = st
                .voters
                .iter()
                .filter(|v| **v != id)
                .max_by_key(|v| st.matched.get(v).copied().unwrap_or(0))
                .copied()
                .unwrap_or(0);
            self.store().transfer_leader(to)?;
            let mut leader = self.store().leader();
            let _ = tokio::time::timeout(Duration::from_secs(3), async {
                leader.wait_for(|l| !l.is_leader).await.is_ok()
            })
            .await;
            return Err(ApiError::Unavailable(format!(
                "replica {id} is the leader: it handed leadership to replica {to} before \
                 removing itself; nothing was removed yet: retry (the new leader removes it)"
            )));
        }
        let mut members = st.members.clone();
        members.remove(&id);
        let index = self
            .store()
            .conf_change(change(ConfChangeType::RemoveNode, id, &members))
            .await?;
        tracing::info!(id, index, "replica removed");
        Ok((self.members().await?, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        assert!(check_address("10.0.0.1:7000").is_ok());
        assert!(check_address("cp4.example:7000").is_ok());
        for bad in [
            "10.0.0.1",
            ":7000",
            "cp4:",
            "cp4:0",
            "cp4:70000",
            "cp 4:7000",
        ] {
            let e = check_address(bad).unwrap_err().to_string();
            assert!(e.contains("HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn members_list_voters_and_learners_with_addresses() {
        let st = RaftStatus {
            id: 1,
            leader_id: 1,
            voters: vec![1, 2],
            learners: vec![4],
            members: [(1, "a:1"), (2, "b:2"), (4, "d:4")]
                .into_iter()
                .map(|(i, a)| (i, a.to_string()))
                .collect(),
            ..Default::default()
        };
        let m = members_of(&st);
        assert_eq!(m.len(), 3);
        assert!(m[0].is_leader && !m[0].learner && m[0].reachable);
        assert_eq!(
            (m[2].id, m[2].learner, m[2].address.as_str()),
            (4, true, "d:4")
        );
    }

    #[test]
    fn a_change_carries_every_address() {
        let members: BTreeMap<u64, String> = [(1, "a:1".to_string()), (4, "d:4".to_string())]
            .into_iter()
            .collect();
        let cc = change(ConfChangeType::AddLearnerNode, 4, &members);
        assert_eq!(cc.get_changes().len(), 1);
        assert_eq!(cc.get_changes()[0].node_id, 4);
        let ctx = MembershipContext::decode(cc.get_context()).unwrap();
        assert_eq!(ctx.members.len(), 2);
        assert_eq!(ctx.members[1].address, "d:4");
    }
}
