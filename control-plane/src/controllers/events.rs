//! Records Events about objects (what `rkubectl describe` shows at the
//! bottom). Repeats of the same reason and message on the same object bump
//! the existing Event's count instead of creating another.

use crate::handlers::{now, Handlers};
use rkube_api::proto::{object::Kind as Body, Event, EventSource, ObjectMeta, ObjectReference};
use rkube_api::Object;
use std::collections::HashMap;
use std::sync::Arc;

/// (involved object's uid, reason, message): what makes two events "the same".
type EventKey = (String, String, String);

#[derive(Clone)]
pub struct EventRecorder {
    handlers: Handlers,
    component: String,
    seen: Arc<parking_lot::Mutex<HashMap<EventKey, (String, i32)>>>,
}

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

impl EventRecorder {
    pub fn new(handlers: Handlers, component: &str) -> EventRecorder {
        EventRecorder {
            handlers,
            component: component.into(),
            seen: Default::default(),
        }
    }

    /// Records an event in the background; failures are logged, never
    /// returned (events are best effort, as in Kubernetes).
    pub fn record(&self, about: &Object, event_type: &str, reason: &str, message: &str) {
        let meta = about.metadata().cloned().unwrap_or_default();
        let kind = about.kind().map(|k| k.name()).unwrap_or_default();
        let api_version = about.kind().map(|k| k.api_version()).unwrap_or_default();
        let namespace = if meta.namespace.is_empty() {
            "default".to_string()
        } else {
            meta.namespace.clone()
        };
        let dedup = (meta.uid.clone(), reason.to_string(), message.to_string());
        let existing = self.seen.lock().get(&dedup).cloned();
        let this = self.clone();
        let (event_type, reason, message) = (
            event_type.to_string(),
            reason.to_string(),
            message.to_string(),
        );
        tokio::spawn(async move {
            if let Some((name, count)) = existing {
                let patch = serde_json::json!({
                    "count": count + 1,
                    "lastTimestamp": now(),
                })
                .to_string();
                if this
                    .handlers
                    .patch("Event", &namespace, &name, "merge", &patch, false)
                    .await
                    .is_ok()
                {
                    this.seen.lock().insert(dedup, (name, count + 1));
                    return;
                }
            }
            let name = format!("{}.{:016x}", meta.name, rand::random::<u64>());
            let ts = now();
            let ev = Object::from_body(Body::Event(Event {
                metadata: Some(ObjectMeta {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    ..Default::default()
                }),
                involved_object: Some(ObjectReference {
                    kind: kind.into(),
                    namespace: meta.namespace.clone(),
                    name: meta.name.clone(),
                    uid: meta.uid.clone(),
                    api_version: api_version.into(),
                    resource_version: meta.resource_version.clone(),
                    field_path: String::new(),
                }),
                reason: reason.clone(),
                message: message.clone(),
                source: Some(EventSource {
                    component: this.component.clone(),
                    host: String::new(),
                }),
                first_timestamp: ts.clone(),
                last_timestamp: ts,
                count: 1,
                r#type: event_type,
                reporting_component: this.component.clone(),
                ..Default::default()
            }));
            match this.handlers.create(ev, false).await {
                Ok(_) => {
                    let mut seen = this.seen.lock();
                    if seen.len() > 10_000 {
                        seen.clear();
                    }
                    seen.insert(dedup, (name, 1));
                }
                Err(e) => tracing::debug!(error = %e, "recording an event failed"),
            }
        });
    }
}
