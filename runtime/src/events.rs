//! Container lifecycle events for GetContainerEvents. Creation and removal
//! are announced by the verbs; starts and exits are noticed by a watcher
//! that re-reads task state whenever a monitor ends (for monitors this shim
//! started) and every quarter second (for those it adopted at start).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, Notify};

use crate::oci::task::TaskStatus;
use crate::proto::{ContainerEvent, ContainerEventType};
use crate::records;
use crate::runtime::Runtime;

const POLL: Duration = Duration::from_millis(250);

pub struct Events {
    tx: broadcast::Sender<ContainerEvent>,
    wake: Arc<Notify>,
}

impl Default for Events {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Events {
            tx,
            wake: Arc::new(Notify::new()),
        }
    }
}

impl Events {
    pub fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.tx.subscribe()
    }

    pub fn send(&self, container_id: &str, sandbox_id: &str, kind: ContainerEventType) {
        let _ = self.tx.send(ContainerEvent {
            container_id: container_id.to_string(),
            container_event_type: kind as i32,
            created_at: records::now_nanos(),
            pod_sandbox_id: sandbox_id.to_string(),
        });
    }

    /// Something may have changed: look now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A handle that wakes the watcher from anywhere.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Created,
    Running,
    Exited,
}

/// Watches containers' states until the runtime is dropped.
pub async fn watch(runtime: Weak<Runtime>) {
    let mut seen: HashMap<String, Seen> = HashMap::new();
    // The first round only learns what the shim adopted at start.
    let mut first_round = true;
    loop {
        let Some(rt) = runtime.upgrade() else {
            return;
        };
        let mut now = HashMap::new();
        for c in rt.all_containers() {
            let status = c.task.status();
            let state = match &status {
                TaskStatus::Created => Seen::Created,
                TaskStatus::Running(_) => Seen::Running,
                TaskStatus::Exited(_) => Seen::Exited,
            };
            // A container new since the last round was announced as created.
            let before = match seen.get(&c.id) {
                Some(s) => Some(*s),
                None if first_round => None,
                None => Some(Seen::Created),
            };
            if let Some(before) = before {
                let ran = match &status {
                    TaskStatus::Exited(exit) => exit.started_at > 0,
                    _ => true,
                };
                let sandbox = &c.record.sandbox_id;
                if before == Seen::Created && state != Seen::Created && ran {
                    rt.events
                        .send(&c.id, sandbox, ContainerEventType::ContainerStartedEvent);
                }
                if before != Seen::Exited && state == Seen::Exited {
                    rt.events
                        .send(&c.id, sandbox, ContainerEventType::ContainerStoppedEvent);
                }
            }
            now.insert(c.id.clone(), state);
        }
        seen = now;
        first_round = false;
        let wait = tokio::time::sleep(POLL);
        tokio::select! {
            _ = wait => {}
            _ = rt.events.wake.notified() => {}
        }
    }
}
