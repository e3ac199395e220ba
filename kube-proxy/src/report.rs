//! Telling people what a Service asks that this node does not serve: a log
//! line and a Warning Event on the Service when a problem appears, a log
//! line when it clears, and the current set on `/metrics`.
//!
//! Problems are remembered per Service, so a problem is reported once when
//! it appears, not on every sync. Events are posted in the background and
//! best effort: a control plane that cannot take them never slows a sync.

use crate::metrics::Metrics;
use crate::table::Problem;
use rkube_api::client::Client;
use rkube_api::proto::object::Kind as Body;
use rkube_api::proto::{Event, EventSource, ObjectMeta, ObjectReference, Service};
use rkube_api::Object;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub struct Reporter {
    client: Option<Client>,
    node: String,
    metrics: Arc<Metrics>,
    current: BTreeMap<String, BTreeSet<Problem>>,
}

impl Reporter {
    /// `client` is where Events go (`None`: log and metrics only); `node`
    /// names this proxy in them.
    pub fn new(client: Option<Client>, node: String, metrics: Arc<Metrics>) -> Reporter {
        Reporter {
            client,
            node,
            metrics,
            current: BTreeMap::new(),
        }
    }

    /// Replaces the problems of Service `key` (`svc` is `None` once it is
    /// gone: its problems are forgotten quietly).
    pub fn report(&mut self, key: &str, svc: Option<&Service>, problems: Vec<Problem>) {
        let now: BTreeSet<Problem> = problems.into_iter().collect();
        let before = self.current.remove(key).unwrap_or_default();
        if svc.is_some() {
            for p in now.difference(&before) {
                tracing::warn!(service = key, reason = p.reason, "{}", p.message);
                if let (Some(client), Some(svc)) = (&self.client, svc) {
                    self.post_event(client.clone(), svc, p);
                }
            }
            for p in before.difference(&now) {
                tracing::info!(service = key, reason = p.reason, "resolved: {}", p.message);
            }
        }
        let reasons: Vec<&str> = now.iter().map(|p| p.reason).collect();
        self.metrics.set_problems(key, &reasons);
        if !now.is_empty() && svc.is_some() {
            self.current.insert(key.to_string(), now);
        }
    }

    fn post_event(&self, client: Client, svc: &Service, p: &Problem) {
        let meta = svc.metadata.clone().unwrap_or_default();
        let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let event = Object::from_body(Body::Event(Event {
            metadata: Some(ObjectMeta {
                name: format!("{}.{:016x}", meta.name, rand::random::<u64>()),
                namespace: meta.namespace.clone(),
                ..Default::default()
            }),
            involved_object: Some(ObjectReference {
                kind: "Service".into(),
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                uid: meta.uid.clone(),
                api_version: "v1".into(),
                resource_version: meta.resource_version.clone(),
                field_path: String::new(),
            }),
            reason: p.reason.to_string(),
            message: p.message.clone(),
            source: Some(EventSource {
                component: "kube-proxy".into(),
                host: self.node.clone(),
            }),
            first_timestamp: ts.clone(),
            last_timestamp: ts,
            count: 1,
            r#type: "Warning".into(),
            reporting_component: "kube-proxy".into(),
            reporting_instance: self.node.clone(),
            ..Default::default()
        }));
        tokio::spawn(async move {
            if let Err(e) = client.create(event).await {
                tracing::debug!(error = %e, "event not recorded");
            }
        });
    }
}
