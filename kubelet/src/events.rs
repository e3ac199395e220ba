//! Events about pods and the node (what `rkubectl describe` shows at the
//! bottom). Best effort, like Kubernetes: a failed write is logged, never
//! returned. Repeats of one (object, reason, message) bump the count.

use rkube_api::client::Client;
use rkube_api::proto::{object::Kind as Body, Event, EventSource, ObjectMeta, ObjectReference};
use rkube_api::Object;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// (involved object's uid, reason, message) -> (event name, count).
type Seen = HashMap<(String, String, String), (String, i32)>;

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    host: String,
    seen: Arc<Mutex<Seen>>,
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Recorder {
    pub fn new(client: Client, host: &str) -> Recorder {
        Recorder {
            client,
            host: host.into(),
            seen: Default::default(),
        }
    }

    /// Records an event about `about` (kind, namespace, name, uid) in the
    /// background.
    pub fn record(&self, about: ObjectReference, event_type: &str, reason: &str, message: &str) {
        let key = (about.uid.clone(), reason.to_string(), message.to_string());
        let prior = self.seen.lock().unwrap().get(&key).cloned();
        let (this, event_type, reason, message) = (
            self.clone(),
            event_type.to_string(),
            reason.to_string(),
            message.to_string(),
        );
        tokio::spawn(async move {
            if let Some((name, count)) = prior {
                let ns = if about.namespace.is_empty() {
                    "default".to_string()
                } else {
                    about.namespace.clone()
                };
                if let Ok(mut cur) = this.client.get("Event", &ns, &name).await {
                    if let Some(Body::Event(e)) = cur.kind.as_mut() {
                        e.count = count + 1;
                        e.last_timestamp = now();
                    }
                    if this.client.update(cur).await.is_ok() {
                        this.seen.lock().unwrap().insert(key, (name, count + 1));
                        return;
                    }
                }
            }
            let t = now();
            let ns = if about.namespace.is_empty() {
                "default".to_string()
            } else {
                about.namespace.clone()
            };
            let name = format!("{}.{:016x}", about.name, rand::random::<u64>());
            let ev = Object::from_body(Body::Event(Event {
                metadata: Some(ObjectMeta {
                    name: name.clone(),
                    namespace: ns,
                    ..Default::default()
                }),
                involved_object: Some(about),
                reason,
                message,
                source: Some(EventSource {
                    component: "kubelet".into(),
                    host: this.host.clone(),
                }),
                first_timestamp: t.clone(),
                last_timestamp: t,
                count: 1,
                r#type: event_type,
                reporting_component: "kubelet".into(),
                reporting_instance: this.host.clone(),
                ..Default::default()
            }));
            match this.client.create(ev).await {
                Ok(_) => {
                    this.seen.lock().unwrap().insert(key, (name, 1));
                }
                Err(e) => tracing::debug!(error = %e, "event not recorded"),
            }
        });
    }
}

/// A reference to a pod for events.
pub fn pod_ref(namespace: &str, name: &str, uid: &str) -> ObjectReference {
    ObjectReference {
        kind: "Pod".into(),
        api_version: "v1".into(),
        namespace: namespace.into(),
        name: name.into(),
        uid: uid.into(),
        ..Default::default()
    }
}
