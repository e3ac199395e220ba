//! Pod rows: READY, STATUS and RESTARTS worked out the way kubectl does.

use super::or_none;
use crate::output::age::age;
use chrono::{DateTime, Utc};
use rkube_api::proto::{ContainerStatus, Pod};

pub fn columns(wide: bool) -> Vec<&'static str> {
    let mut c = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
    if wide {
        c.extend(["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
    }
    c
}

pub fn row(p: &Pod, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let meta = p.metadata.clone().unwrap_or_default();
    let mut r = vec![
        meta.name.clone(),
        ready(p),
        status(p),
        restarts(p).to_string(),
        age(&meta.creation_timestamp, now),
    ];
    if wide {
        let st = p.status.clone().unwrap_or_default();
        let node = p
            .spec
            .as_ref()
            .map(|s| s.node_name.clone())
            .unwrap_or_default();
        r.push(or_none(&st.pod_ip));
        r.push(or_none(&node));
        r.push(or_none(&st.nominated_node_name));
        r.push("<none>".to_string());
    }
    r
}

/// `ready/total`: ready containers of those the spec declares.
pub fn ready(p: &Pod) -> String {
    let total = p.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0);
    let ready = p
        .status
        .as_ref()
        .map(|s| s.container_statuses.iter().filter(|c| c.ready).count())
        .unwrap_or(0);
    format!("{ready}/{total}")
}

/// Restarts of all containers.
pub fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .map(|s| s.container_statuses.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

/// A terminated container's reason, or `Signal:N` / `ExitCode:N`.
fn terminated_reason(c: &ContainerStatus) -> Option<String> {
    let t = c.state.as_ref()?.terminated.as_ref()?;
    Some(if !t.reason.is_empty() {
        t.reason.clone()
    } else if t.signal != 0 {
        format!("Signal:{}", t.signal)
    } else {
        format!("ExitCode:{}", t.exit_code)
    })
}

fn waiting_reason(c: &ContainerStatus) -> Option<String> {
    let w = c.state.as_ref()?.waiting.as_ref()?;
    (!w.reason.is_empty()).then(|| w.reason.clone())
}

/// The STATUS column: `Terminating` while being deleted, else the reason an
/// init or app container gives, else the pod's reason or phase.
pub fn status(p: &Pod) -> String {
    let st = p.status.clone().unwrap_or_default();
    let mut reason = if !st.reason.is_empty() {
        st.reason.clone()
    } else if !st.phase.is_empty() {
        st.phase.clone()
    } else {
        "Pending".to_string()
    };
    let init_total = p
        .spec
        .as_ref()
        .map(|s| s.init_containers.len())
        .unwrap_or(0);
    let mut initializing = false;
    for (i, c) in st.init_container_statuses.iter().enumerate() {
        let state = c.state.clone().unwrap_or_default();
        if let Some(t) = &state.terminated {
            if t.exit_code == 0 {
                continue;
            }
        }
        initializing = true;
        reason = if let Some(r) = terminated_reason(c) {
            format!("Init:{r}")
        } else if let Some(r) = waiting_reason(c).filter(|r| r != "PodInitializing") {
            format!("Init:{r}")
        } else {
            format!(
                "Init:{i}/{}",
                init_total.max(st.init_container_statuses.len())
            )
        };
        break;
    }
    if !initializing {
        let mut has_running = false;
        // The first container with something to say wins.
        for c in st.container_statuses.iter().rev() {
            if let Some(r) = waiting_reason(c) {
                reason = r;
            } else if let Some(r) = terminated_reason(c) {
                reason = r;
            } else if c.ready && c.state.as_ref().and_then(|s| s.running.as_ref()).is_some() {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".to_string();
        }
    }
    let deleting = p
        .metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty());
    if deleting {
        return if st.reason == "NodeLost" {
            "Unknown".to_string()
        } else {
            "Terminating".to_string()
        };
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::age::parse_time;
    use rkube_api::proto::{
        Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
        ContainerStateWaiting, ObjectMeta, PodSpec, PodStatus,
    };

    fn pod(containers: usize, phase: &str, statuses: Vec<ContainerStatus>) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                creation_timestamp: "2024-03-01T11:00:00Z".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: (0..containers)
                    .map(|i| Container {
                        name: format!("c{i}"),
                        ..Default::default()
                    })
                    .collect(),
                node_name: "wn1".into(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: phase.into(),
                pod_ip: "10.244.1.5".into(),
                container_statuses: statuses,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running(ready: bool, restarts: i32) -> ContainerStatus {
        ContainerStatus {
            ready,
            restart_count: restarts,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn waiting(reason: &str) -> ContainerStatus {
        ContainerStatus {
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: reason.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn terminated(reason: &str, code: i32) -> ContainerStatus {
        ContainerStatus {
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    reason: reason.into(),
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_counts_ready_containers_of_the_spec() {
        assert_eq!(ready(&pod(1, "Running", vec![running(true, 0)])), "1/1");
        assert_eq!(
            ready(&pod(
                2,
                "Running",
                vec![running(true, 0), running(false, 0)]
            )),
            "1/2"
        );
        assert_eq!(ready(&pod(1, "Pending", vec![])), "0/1");
    }

    #[test]
    fn status_prefers_container_reasons() {
        assert_eq!(
            status(&pod(1, "Running", vec![running(true, 0)])),
            "Running"
        );
        assert_eq!(status(&pod(1, "", vec![])), "Pending");
        assert_eq!(
            status(&pod(1, "Pending", vec![waiting("ContainerCreating")])),
            "ContainerCreating"
        );
        assert_eq!(
            status(&pod(1, "Running", vec![waiting("CrashLoopBackOff")])),
            "CrashLoopBackOff"
        );
        assert_eq!(
            status(&pod(1, "Failed", vec![terminated("Error", 1)])),
            "Error"
        );
        assert_eq!(
            status(&pod(1, "Failed", vec![terminated("", 137)])),
            "ExitCode:137"
        );
        assert_eq!(
            status(&pod(
                2,
                "Running",
                vec![terminated("Completed", 0), running(true, 0)]
            )),
            "Running"
        );
        // The first container's reason wins over later ones.
        assert_eq!(
            status(&pod(
                2,
                "Pending",
                vec![waiting("ErrImagePull"), waiting("ContainerCreating")]
            )),
            "ErrImagePull"
        );
    }

    #[test]
    fn deletion_means_terminating() {
        let mut p = pod(1, "Running", vec![running(true, 0)]);
        if let Some(m) = p.metadata.as_mut() {
            m.deletion_timestamp = "2024-03-01T11:59:00Z".into();
        }
        assert_eq!(status(&p), "Terminating");
    }

    #[test]
    fn init_containers_show_progress() {
        let mut p = pod(1, "Pending", vec![]);
        if let Some(s) = p.spec.as_mut() {
            s.init_containers = vec![Container::default(), Container::default()];
        }
        if let Some(s) = p.status.as_mut() {
            s.init_container_statuses = vec![terminated("Completed", 0), running(false, 0)];
        }
        assert_eq!(status(&p), "Init:1/2");
        if let Some(s) = p.status.as_mut() {
            s.init_container_statuses[1] = waiting("ImagePullBackOff");
        }
        assert_eq!(status(&p), "Init:ImagePullBackOff");
    }

    #[test]
    fn rows_and_wide_rows() {
        let now = parse_time("2024-03-01T12:00:00Z").unwrap();
        let p = pod(1, "Running", vec![running(true, 2)]);
        assert_eq!(row(&p, false, now), ["p", "1/1", "Running", "2", "60m"]);
        assert_eq!(
            row(&p, true, now),
            [
                "p",
                "1/1",
                "Running",
                "2",
                "60m",
                "10.244.1.5",
                "wn1",
                "<none>",
                "<none>"
            ]
        );
        assert_eq!(columns(true).len(), 9);
    }
}
