//! Endpoints controller: for each Service with a selector, an Endpoints
//! object of the same name listing the selected pods' addresses and ports.
//!
//! - Pods count when they have an IP and are not terminated (Succeeded or
//!   Failed) and not being deleted. Ready pods go in `addresses`, the rest
//!   in `notReadyAddresses` — unless the Service publishes not-ready
//!   addresses, in which case all go in `addresses` (terminating pods too).
//! - Each Service port resolves per pod ([`resolve_port`]): a numeric
//!   `targetPort` is that port; a name is the pod's container port of that
//!   name and protocol; none is the Service port. Pods whose ports resolve
//!   to different numbers land in different subsets: addresses are grouped
//!   by the exact set of ports they serve, as Kubernetes repacks subsets.
//! - The Endpoints is created when missing and written only when its
//!   (canonically sorted) subsets or labels differ.
//! - Services without a selector are left alone (their Endpoints are the
//!   user's). An Endpoints whose Service is gone is deleted when this
//!   controller made it (it carries [`MANAGED_BY_ANNOTATION`]) or when the
//!   Service's deletion was seen, as Kubernetes does.

use super::events::{EventRecorder, WARNING};
use super::informer::{object_key, split_key, Informer, Informers, Notice};
use super::replication::{labels_of, pod_is_ready, pod_of, pod_phase};
use super::workqueue::WorkQueue;
use super::{feed, run_workers, Action, ControllerConfig, Reconcile};
use crate::handlers::{ApiError, Handlers};
use rkube_api::kinds::Kind;
use rkube_api::proto::{
    object::Kind as Body, EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectMeta,
    ObjectReference, Pod, Preconditions, Service, ServicePort,
};
use rkube_api::selector::LabelSelector;
use rkube_api::Object;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Marks Endpoints this controller created (and so may delete).
pub const MANAGED_BY_ANNOTATION: &str = "endpoints.rkube.io/managed-by";
pub const MANAGED_BY: &str = "endpoint-controller";
/// Kubernetes' label on the Endpoints of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

fn service_of(o: &Object) -> Option<&Service> {
    match o.kind.as_ref() {
        Some(Body::Service(s)) => Some(s),
        _ => None,
    }
}

fn endpoints_of(o: &Object) -> Option<&Endpoints> {
    match o.kind.as_ref() {
        Some(Body::Endpoints(e)) => Some(e),
        _ => None,
    }
}

/// The Service's selector, if it has a non-empty one (and is not an
/// ExternalName Service, which has no endpoints).
pub fn service_selector(svc: &Service) -> Option<LabelSelector> {
    let spec = svc.spec.as_ref()?;
    if spec.selector.is_empty() || spec.r#type == "ExternalName" {
        return None;
    }
    Some(LabelSelector::from_map(&spec.selector))
}

fn protocol_or_tcp(p: &str) -> &str {
    if p.is_empty() {
        "TCP"
    } else {
        p
    }
}

/// The pod's port number for a Service port, or `None` when a named target
/// port is not among the pod's container ports (with that protocol).
pub fn resolve_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let target = sp.target_port.trim();
    if target.is_empty() {
        return Some(sp.port);
    }
    if let Ok(n) = target.parse::<i32>() {
        return Some(if n > 0 { n } else { sp.port });
    }
    let proto = protocol_or_tcp(&sp.protocol);
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .find(|p| p.name == target && protocol_or_tcp(&p.protocol) == proto)
        .map(|p| p.container_port)
}

/// Whether a pod belongs in the Endpoints at all.
fn pod_included(pod: &Pod, publish_not_ready: bool) -> bool {
    let Some(st) = pod.status.as_ref() else {
        return false;
    };
    if st.pod_ip.is_empty() || matches!(pod_phase(pod), "Succeeded" | "Failed") {
        return false;
    }
    let deleting = pod
        .metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty());
    !deleting || publish_not_ready
}

fn address_of(pod: &Pod, svc: &ObjectMeta) -> EndpointAddress {
    let meta = pod.metadata.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let hostname = if !spec.hostname.is_empty()
        && spec.subdomain == svc.name
        && meta.namespace == svc.namespace
    {
        spec.hostname.clone()
    } else {
        String::new()
    };
    EndpointAddress {
        ip: pod
            .status
            .as_ref()
            .map(|s| s.pod_ip.clone())
            .unwrap_or_default(),
        hostname,
        node_name: (!spec.node_name.is_empty()).then(|| spec.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: "Pod".into(),
            namespace: meta.namespace,
            name: meta.name,
            uid: meta.uid,
            ..Default::default()
        }),
    }
}

type PortKey = (String, i32, String);

fn port_key(p: &EndpointPort) -> PortKey {
    (p.name.clone(), p.port, p.protocol.clone())
}

fn address_key(a: &EndpointAddress) -> (String, String) {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .map(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

/// Subsets in a canonical order (ports, addresses and subsets sorted), so
/// two that say the same thing compare equal.
pub fn canonical(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let mut out: Vec<EndpointSubset> = subsets
        .iter()
        .map(|s| {
            let mut s = s.clone();
            for p in &mut s.ports {
                if p.protocol.is_empty() {
                    p.protocol = "TCP".into();
                }
            }
            s.ports.sort_by_key(port_key);
            s.addresses.sort_by_key(address_key);
            s.not_ready_addresses.sort_by_key(address_key);
            s
        })
        .collect();
    out.sort_by_key(|s| {
        (
            s.ports.iter().map(port_key).collect::<Vec<_>>(),
            s.addresses.first().map(address_key),
            s.not_ready_addresses.first().map(address_key),
        )
    });
    out
}

/// The subsets a Service's Endpoints should hold, given the namespace's
/// pods (those the selector does not match are ignored).
pub fn desired_subsets(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let Some(selector) = service_selector(svc) else {
        return Vec::new();
    };
    let spec = svc.spec.clone().unwrap_or_default();
    let smeta = svc.metadata.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses;
    let headless = spec.cluster_ip == "None";
    // Port set -> (ready, not ready) addresses.
    type Group = (
        Vec<EndpointPort>,
        Vec<EndpointAddress>,
        Vec<EndpointAddress>,
    );
    let mut groups: BTreeMap<Vec<PortKey>, Group> = BTreeMap::new();
    for pod in pods {
        let labels = pod.metadata.as_ref().map(|m| &m.labels);
        if !labels.is_some_and(|l| selector.matches(l)) {
            continue;
        }
        if pod.metadata.as_ref().map(|m| m.namespace.as_str()) != Some(smeta.namespace.as_str()) {
            continue;
        }
        if !pod_included(pod, publish) {
            continue;
        }
        let ports: Vec<EndpointPort> = spec
            .ports
            .iter()
            .filter_map(|sp| {
                resolve_port(pod, sp).map(|port| EndpointPort {
                    name: sp.name.clone(),
                    port,
                    protocol: protocol_or_tcp(&sp.protocol).to_string(),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        if ports.is_empty() && !(spec.ports.is_empty() && headless) {
            // No Service port resolves for this pod.
            continue;
        }
        let mut key: Vec<PortKey> = ports.iter().map(port_key).collect();
        key.sort();
        let group = groups
            .entry(key)
            .or_insert_with(|| (ports.clone(), Vec::new(), Vec::new()));
        let addr = address_of(pod, &smeta);
        if publish || pod_is_ready(pod) {
            group.1.push(addr);
        } else {
            group.2.push(addr);
        }
    }
    let subsets: Vec<EndpointSubset> = groups
        .into_values()
        .map(|(ports, ready, not_ready)| EndpointSubset {
            addresses: ready,
            not_ready_addresses: not_ready,
            ports,
        })
        .collect();
    canonical(&subsets)
}

/// The labels of a Service's Endpoints: the Service's, plus the headless
/// marker for headless Services.
pub fn desired_labels(svc: &Service) -> HashMap<String, String> {
    let mut labels = svc
        .metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    if svc.spec.as_ref().is_some_and(|s| s.cluster_ip == "None") {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

fn managed(meta: &ObjectMeta) -> bool {
    meta.annotations
        .get(MANAGED_BY_ANNOTATION)
        .map(String::as_str)
        == Some(MANAGED_BY)
}

/// What of a pod the Endpoints depend on: a change elsewhere (a container
/// status, a condition other than Ready) does not concern this controller.
#[allow(clippy::type_complexity)]
fn endpoint_view(
    p: &Pod,
) -> (
    String,
    bool,
    bool,
    String,
    String,
    String,
    String,
    Vec<String>,
) {
    let spec = p.spec.clone().unwrap_or_default();
    let ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .map(|p| format!("{}/{}/{}", p.name, p.container_port, p.protocol))
        .collect();
    (
        p.status
            .as_ref()
            .map(|s| s.pod_ip.clone())
            .unwrap_or_default(),
        pod_is_ready(p),
        p.metadata
            .as_ref()
            .is_some_and(|m| !m.deletion_timestamp.is_empty()),
        pod_phase(p).to_string(),
        spec.node_name,
        spec.hostname,
        spec.subdomain,
        ports,
    )
}

/// The Services of a namespace, as the Service informer lists them.
type ServiceLister<'a> = &'a dyn Fn(&str) -> Vec<Arc<Object>>;

/// Maps a notice to the Service keys to reconcile. Deleted Services are
/// remembered in `deleted_services`.
fn notice_keys(
    n: &Notice,
    services: ServiceLister,
    deleted_services: &parking_lot::Mutex<HashSet<String>>,
) -> Vec<String> {
    let Notice::Changed {
        kind,
        old,
        new,
        deleted,
    } = n
    else {
        return Vec::new();
    };
    match kind {
        Kind::Service => {
            let key = object_key(new);
            if *deleted {
                deleted_services.lock().insert(key.clone());
            }
            vec![key]
        }
        Kind::Endpoints => vec![object_key(new)],
        Kind::Pod => {
            let Some(newp) = pod_of(new) else {
                return Vec::new();
            };
            let changed = *deleted
                || match old.as_deref() {
                    None => true,
                    Some(o) => {
                        labels_of(o) != labels_of(new)
                            || pod_of(o).map(endpoint_view) != Some(endpoint_view(newp))
                    }
                };
            if !changed {
                return Vec::new();
            }
            let mut keys: Vec<String> = services(new.namespace())
                .iter()
                .filter(|s| {
                    service_of(s).and_then(service_selector).is_some_and(|sel| {
                        sel.matches(labels_of(new))
                            || old.as_deref().is_some_and(|o| sel.matches(labels_of(o)))
                    })
                })
                .map(|s| object_key(s))
                .collect();
            keys.sort();
            keys.dedup();
            keys
        }
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------- the controller

pub struct EndpointsController {
    handlers: Handlers,
    services: Arc<Informer>,
    pods: Arc<Informer>,
    endpoints: Arc<Informer>,
    deleted_services: Arc<parking_lot::Mutex<HashSet<String>>>,
    recorder: EventRecorder,
}

/// Starts the Endpoints controller.
pub fn start(informers: &Informers, cfg: &ControllerConfig) {
    let services = informers.get(Kind::Service);
    let pods = informers.get(Kind::Pod);
    let endpoints = informers.get(Kind::Endpoints);
    let deleted_services: Arc<parking_lot::Mutex<HashSet<String>>> = Default::default();
    let ctl = Arc::new(EndpointsController {
        handlers: informers.handlers().clone(),
        services: services.clone(),
        pods: pods.clone(),
        endpoints: endpoints.clone(),
        deleted_services: deleted_services.clone(),
        recorder: EventRecorder::new(informers.handlers().clone(), "endpoint-controller"),
    });
    let queue = WorkQueue::new();
    let map_services = services.clone();
    let (all_services, all_endpoints) = (services.clone(), endpoints.clone());
    feed(
        informers,
        &[Kind::Service, Kind::Pod, Kind::Endpoints],
        queue.clone(),
        cfg.resync,
        move |n| notice_keys(n, &|ns| map_services.list_namespace(ns), &deleted_services),
        move || {
            let mut keys = all_services.keys();
            keys.extend(all_endpoints.keys());
            keys.sort();
            keys.dedup();
            keys
        },
    );
    let (inf, workers) = (informers.clone(), cfg.workers);
    informers.spawn(async move {
        // A Service missing from a half-filled cache must not cost its
        // Endpoints.
        services.wait_synced().await;
        pods.wait_synced().await;
        endpoints.wait_synced().await;
        tracing::debug!("endpoint controller: caches synced; starting workers");
        run_workers(&inf, ctl, queue, workers);
    });
}

#[tonic::async_trait]
impl Reconcile for EndpointsController {
    fn name(&self) -> &'static str {
        "endpoint-controller"
    }

    async fn reconcile(&self, key: &str) -> Result<Action, ApiError> {
        let Some(svc_obj) = self.services.get_key(key) else {
            let seen_deleted = self.deleted_services.lock().remove(key);
            return self.remove_orphaned(key, seen_deleted).await;
        };
        self.deleted_services.lock().remove(key);
        let Some(svc) = service_of(&svc_obj) else {
            return Ok(Action::Done);
        };
        let Some(selector) = service_selector(svc) else {
            // Selector-less Services' Endpoints belong to the user.
            return Ok(Action::Done);
        };
        let (ns, name) = split_key(key);
        let pod_objs = self.pods.list_namespace(ns);
        let pods: Vec<&Pod> = pod_objs
            .iter()
            .filter_map(|o| pod_of(o))
            .filter(|p| {
                p.metadata
                    .as_ref()
                    .is_some_and(|m| selector.matches(&m.labels))
            })
            .collect();
        let subsets = desired_subsets(svc, &pods);
        let labels = desired_labels(svc);
        let current = self.endpoints.get_key(key);
        let result = match current.as_deref().and_then(endpoints_of) {
            None => {
                let ep = Object::from_body(Body::Endpoints(Endpoints {
                    metadata: Some(ObjectMeta {
                        name: name.into(),
                        namespace: ns.into(),
                        labels,
                        annotations: [(MANAGED_BY_ANNOTATION.to_string(), MANAGED_BY.to_string())]
                            .into(),
                        ..Default::default()
                    }),
                    subsets,
                    ..Default::default()
                }));
                let n = count(&ep);
                self.handlers.create(ep, false).await.map(|_| {
                    tracing::debug!(key, addresses = n.0, not_ready = n.1, "created endpoints");
                })
            }
            Some(cur) => {
                let meta = cur.metadata.clone().unwrap_or_default();
                if canonical(&cur.subsets) == subsets && meta.labels == labels && managed(&meta) {
                    return Ok(Action::Done);
                }
                let mut next = cur.clone();
                next.subsets = subsets;
                let m = next.metadata.get_or_insert_with(Default::default);
                m.labels = labels;
                m.annotations
                    .insert(MANAGED_BY_ANNOTATION.into(), MANAGED_BY.into());
                // resourceVersion stays: a conflict retries on fresh state.
                let ep = Object::from_body(Body::Endpoints(next));
                let n = count(&ep);
                self.handlers.update(ep, false, false).await.map(|_| {
                    tracing::debug!(key, addresses = n.0, not_ready = n.1, "updated endpoints");
                })
            }
        };
        match result {
            Ok(()) => Ok(Action::Done),
            // The cache is behind; the retry sees the newer state.
            Err(e @ (ApiError::Conflict(_) | ApiError::AlreadyExists(_))) => Err(e),
            Err(e) => {
                self.recorder.record(
                    &svc_obj,
                    WARNING,
                    "FailedToUpdateEndpoint",
                    &format!("Failed to update endpoint {key}: {e}"),
                );
                Err(e)
            }
        }
    }
}

fn count(ep: &Object) -> (usize, usize) {
    endpoints_of(ep)
        .map(|e| {
            e.subsets.iter().fold((0, 0), |(a, n), s| {
                (a + s.addresses.len(), n + s.not_ready_addresses.len())
            })
        })
        .unwrap_or((0, 0))
}

impl EndpointsController {
    /// Deletes the Endpoints of a Service that is gone, if this controller
    /// made it or the Service's deletion was seen.
    async fn remove_orphaned(&self, key: &str, seen_deleted: bool) -> Result<Action, ApiError> {
        let Some(ep) = self.endpoints.get_key(key) else {
            return Ok(Action::Done);
        };
        let meta = ep.metadata().cloned().unwrap_or_default();
        if !seen_deleted && !managed(&meta) {
            return Ok(Action::Done);
        }
        let (ns, name) = split_key(key);
        // The cache may be behind a Service just created: ask the store.
        match self.handlers.get("Service", ns, name, "").await {
            Ok(_) => return Ok(Action::Done),
            Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let pre = Preconditions {
            uid: meta.uid.clone(),
            resource_version: String::new(),
        };
        match self
            .handlers
            .delete("Endpoints", ns, name, "", Some(pre))
            .await
        {
            Ok(_) => {
                tracing::debug!(key, "deleted endpoints of a deleted service");
                Ok(Action::Done)
            }
            Err(ApiError::NotFound(_) | ApiError::Conflict(_)) => Ok(Action::Done),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::replication::testing;
    use rkube_api::proto::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec,
    };
    use std::time::Duration;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sport(name: &str, port: i32, target: &str) -> ServicePort {
        ServicePort {
            name: name.into(),
            port,
            target_port: target.into(),
            protocol: "TCP".into(),
            ..Default::default()
        }
    }

    fn service(name: &str, selector: &[(&str, &str)], ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                labels: labels(&[("team", "a")]),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                selector: labels(selector),
                ports,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    struct P {
        name: &'static str,
        app: &'static str,
        ip: &'static str,
        ready: bool,
        http_port: Option<i32>,
        phase: &'static str,
        deleting: bool,
    }

    impl Default for P {
        fn default() -> Self {
            P {
                name: "p",
                app: "web",
                ip: "10.0.0.1",
                ready: true,
                http_port: None,
                phase: "Running",
                deleting: false,
            }
        }
    }

    fn pod(p: P) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: p.name.into(),
                namespace: "default".into(),
                uid: format!("uid-{}", p.name),
                labels: labels(&[("app", p.app)]),
                deletion_timestamp: if p.deleting {
                    "2024-01-01T00:00:00Z".into()
                } else {
                    String::new()
                },
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: "wn1".into(),
                containers: vec![Container {
                    name: "c".into(),
                    image: "nginx:1.25".into(),
                    ports: p
                        .http_port
                        .map(|n| {
                            vec![ContainerPort {
                                name: "http".into(),
                                container_port: n,
                                protocol: "TCP".into(),
                                ..Default::default()
                            }]
                        })
                        .unwrap_or_default(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: p.phase.into(),
                pod_ip: p.ip.into(),
                conditions: vec![PodCondition {
                    r#type: "Ready".into(),
                    status: if p.ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ips(a: &[EndpointAddress]) -> Vec<&str> {
        a.iter().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ready_and_not_ready_split_and_odd_pods_skipped() {
        let svc = service("web", &[("app", "web")], vec![sport("", 80, "8080")]);
        let pods = [
            pod(P {
                name: "b",
                ip: "10.0.0.2",
                ..Default::default()
            }),
            pod(P {
                name: "a",
                ip: "10.0.0.1",
                ..Default::default()
            }),
            pod(P {
                name: "unready",
                ip: "10.0.0.3",
                ready: false,
                ..Default::default()
            }),
            pod(P {
                name: "no-ip",
                ip: "",
                ..Default::default()
            }),
            pod(P {
                name: "done",
                ip: "10.0.0.4",
                phase: "Succeeded",
                ..Default::default()
            }),
            pod(P {
                name: "terminating",
                ip: "10.0.0.5",
                deleting: true,
                ..Default::default()
            }),
            pod(P {
                name: "other-app",
                app: "db",
                ip: "10.0.0.6",
                ..Default::default()
            }),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let subsets = desired_subsets(&svc, &refs);
        assert_eq!(subsets.len(), 1);
        let s = &subsets[0];
        assert_eq!(ips(&s.addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips(&s.not_ready_addresses), ["10.0.0.3"]);
        assert_eq!(
            s.ports,
            [EndpointPort {
                name: "".into(),
                port: 8080,
                protocol: "TCP".into(),
                app_protocol: "".into(),
            }]
        );
        let a = &s.addresses[0];
        assert_eq!(a.node_name.as_deref(), Some("wn1"));
        let r = a.target_ref.as_ref().unwrap();
        assert_eq!(
            (
                r.kind.as_str(),
                r.namespace.as_str(),
                r.name.as_str(),
                r.uid.as_str()
            ),
            ("Pod", "default", "a", "uid-a")
        );

        // publishNotReadyAddresses: everyone (terminating too) is an address.
        let mut svc = svc;
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = true;
        let subsets = desired_subsets(&svc, &refs);
        assert_eq!(
            ips(&subsets[0].addresses),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5"]
        );
        assert!(subsets[0].not_ready_addresses.is_empty());
    }

    #[test]
    fn named_target_ports_resolve_per_pod_into_subsets() {
        let svc = service(
            "web",
            &[("app", "web")],
            vec![sport("http", 80, "http"), sport("metrics", 9090, "")],
        );
        let pods = [
            pod(P {
                name: "a",
                ip: "10.0.0.1",
                http_port: Some(8080),
                ..Default::default()
            }),
            pod(P {
                name: "b",
                ip: "10.0.0.2",
                http_port: Some(8081),
                ..Default::default()
            }),
            pod(P {
                name: "c",
                ip: "10.0.0.3",
                http_port: Some(8080),
                ready: false,
                ..Default::default()
            }),
            // No "http" port: only the metrics port resolves.
            pod(P {
                name: "d",
                ip: "10.0.0.4",
                ..Default::default()
            }),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let subsets = desired_subsets(&svc, &refs);
        type Summary<'a> = (Vec<(String, i32)>, Vec<&'a str>, Vec<&'a str>);
        let summary: Vec<Summary> = subsets
            .iter()
            .map(|s| {
                (
                    s.ports.iter().map(|p| (p.name.clone(), p.port)).collect(),
                    ips(&s.addresses),
                    ips(&s.not_ready_addresses),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    vec![("http".to_string(), 8080), ("metrics".to_string(), 9090)],
                    vec!["10.0.0.1"],
                    vec!["10.0.0.3"]
                ),
                (
                    vec![("http".to_string(), 8081), ("metrics".to_string(), 9090)],
                    vec!["10.0.0.2"],
                    vec![]
                ),
                (
                    vec![("metrics".to_string(), 9090)],
                    vec!["10.0.0.4"],
                    vec![]
                ),
            ]
        );
    }

    #[test]
    fn port_resolution_rules() {
        let p = pod(P {
            http_port: Some(8080),
            ..Default::default()
        });
        assert_eq!(resolve_port(&p, &sport("", 80, "")), Some(80));
        assert_eq!(resolve_port(&p, &sport("", 80, "9000")), Some(9000));
        assert_eq!(resolve_port(&p, &sport("", 80, "http")), Some(8080));
        assert_eq!(resolve_port(&p, &sport("", 80, "grpc")), None);
        let mut udp = sport("", 53, "http");
        udp.protocol = "UDP".into();
        assert_eq!(resolve_port(&p, &udp), None, "protocol must match too");
    }

    #[test]
    fn headless_without_ports_lists_addresses_and_labels_it() {
        let mut svc = service("db", &[("app", "web")], vec![]);
        svc.spec.as_mut().unwrap().cluster_ip = "None".into();
        let mut p = pod(P::default());
        let spec = p.spec.as_mut().unwrap();
        spec.hostname = "db-0".into();
        spec.subdomain = "db".into();
        let subsets = desired_subsets(&svc, &[&p]);
        assert_eq!(subsets.len(), 1);
        assert!(subsets[0].ports.is_empty());
        assert_eq!(subsets[0].addresses[0].hostname, "db-0");
        let l = desired_labels(&svc);
        assert_eq!(l.get(HEADLESS_LABEL).map(String::as_str), Some(""));
        assert_eq!(l.get("team").map(String::as_str), Some("a"));
        // Without the subdomain naming the service, no hostname.
        let other = service("web", &[("app", "web")], vec![sport("", 80, "")]);
        assert_eq!(desired_subsets(&other, &[&p])[0].addresses[0].hostname, "");
    }

    #[test]
    fn no_selector_no_subsets_and_canonical_order() {
        let svc = service("ext", &[], vec![sport("", 80, "")]);
        assert!(service_selector(&svc).is_none());
        let p = pod(P::default());
        assert!(desired_subsets(&svc, &[&p]).is_empty());

        let addr = |ip: &str| EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        };
        let port = |n: &str, p: i32| EndpointPort {
            name: n.into(),
            port: p,
            protocol: String::new(),
            ..Default::default()
        };
        let a = vec![
            EndpointSubset {
                addresses: vec![addr("10.0.0.2"), addr("10.0.0.1")],
                not_ready_addresses: vec![],
                ports: vec![port("b", 2), port("a", 1)],
            },
            EndpointSubset {
                addresses: vec![addr("10.0.0.9")],
                not_ready_addresses: vec![],
                ports: vec![port("a", 0)],
            },
        ];
        let mut b = a.clone();
        b.reverse();
        b[1].addresses.reverse();
        b[1].ports.reverse();
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(canonical(&a)[0].ports[0].protocol, "TCP");
    }

    #[test]
    fn pod_notices_reach_services_selecting_old_or_new_labels() {
        let deleted = parking_lot::Mutex::new(HashSet::new());
        let svc_obj = |name: &str, app: &str| {
            Arc::new(Object::from_body(Body::Service(service(
                name,
                &[("app", app)],
                vec![sport("", 80, "")],
            ))))
        };
        let list = |_: &str| {
            vec![
                svc_obj("web", "web"),
                svc_obj("db", "db"),
                Arc::new(Object::from_body(Body::Service(service(
                    "manual",
                    &[],
                    vec![],
                )))),
            ]
        };
        let obj = |p: Pod| Arc::new(Object::from_body(Body::Pod(p)));
        let web = obj(pod(P::default()));
        let db = obj(pod(P {
            app: "db",
            ..Default::default()
        }));
        let n = Notice::Changed {
            kind: Kind::Pod,
            old: Some(web.clone()),
            new: db.clone(),
            deleted: false,
        };
        assert_eq!(
            notice_keys(&n, &list, &deleted),
            ["default/db", "default/web"]
        );
        // An irrelevant change (same view) reaches no one.
        let n = Notice::Changed {
            kind: Kind::Pod,
            old: Some(web.clone()),
            new: web.clone(),
            deleted: false,
        };
        assert!(notice_keys(&n, &list, &deleted).is_empty());
        // Readiness matters.
        let unready = obj(pod(P {
            ready: false,
            ..Default::default()
        }));
        let n = Notice::Changed {
            kind: Kind::Pod,
            old: Some(web.clone()),
            new: unready,
            deleted: false,
        };
        assert_eq!(notice_keys(&n, &list, &deleted), ["default/web"]);
        // A Service deletion is remembered.
        let n = Notice::Changed {
            kind: Kind::Service,
            old: None,
            new: svc_obj("web", "web"),
            deleted: true,
        };
        assert_eq!(notice_keys(&n, &list, &deleted), ["default/web"]);
        assert!(deleted.lock().contains("default/web"));
    }

    // ------------------------------------------------------------ end to end

    async fn endpoints_now(h: &Handlers, name: &str) -> Option<Endpoints> {
        let o = h.get("Endpoints", "default", name, "").await.ok()?;
        endpoints_of(&o).cloned()
    }

    async fn start_pod(h: &Handlers, name: &str, app: &str, ip: &'static str, ready: bool) {
        let mut p = pod(P {
            name: "x",
            app: "x",
            ip,
            ready,
            http_port: Some(8080),
            ..Default::default()
        });
        let m = p.metadata.as_mut().unwrap();
        m.name = name.into();
        m.uid.clear();
        m.labels = labels(&[("app", app)]);
        let status = p.status.take();
        p.spec.as_mut().unwrap().node_name.clear();
        let created = h
            .create(Object::from_body(Body::Pod(p)), false)
            .await
            .unwrap();
        let mut with_status = created.clone();
        if let Some(Body::Pod(pp)) = with_status.kind.as_mut() {
            pp.status = status;
        }
        h.update(with_status, true, false).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endpoints_follow_services_and_pods() {
        let ts = testing::store().await;
        let h = ts.handlers.clone();
        // Someone's hand-made Endpoints without a Service, and a selector-less
        // Service with its own Endpoints: never touched.
        let manual = |name: &str| {
            Object::from_body(Body::Endpoints(Endpoints {
                metadata: Some(ObjectMeta {
                    name: name.into(),
                    namespace: "default".into(),
                    ..Default::default()
                }),
                subsets: vec![EndpointSubset {
                    addresses: vec![EndpointAddress {
                        ip: "192.168.1.1".into(),
                        ..Default::default()
                    }],
                    ports: vec![EndpointPort {
                        port: 5432,
                        protocol: "TCP".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }))
        };
        h.create(manual("handmade"), false).await.unwrap();
        h.create(
            Object::from_body(Body::Service(service(
                "external",
                &[],
                vec![sport("", 5432, "")],
            ))),
            false,
        )
        .await
        .unwrap();
        h.create(manual("external"), false).await.unwrap();

        let informers = Informers::new(h.clone());
        start(
            &informers,
            &ControllerConfig {
                resync: Duration::from_millis(500),
                workers: 2,
                ..Default::default()
            },
        );
        start_pod(&h, "a", "web", "10.0.0.1", true).await;
        start_pod(&h, "b", "web", "10.0.0.2", false).await;
        start_pod(&h, "c", "db", "10.0.0.3", true).await;
        h.create(
            Object::from_body(Body::Service(service(
                "web",
                &[("app", "web")],
                vec![sport("http", 80, "http")],
            ))),
            false,
        )
        .await
        .unwrap();
        testing::eventually("endpoints created", 10, || async {
            endpoints_now(&h, "web").await.is_some_and(|e| {
                e.subsets.len() == 1
                    && ips(&e.subsets[0].addresses) == ["10.0.0.1"]
                    && ips(&e.subsets[0].not_ready_addresses) == ["10.0.0.2"]
                    && e.subsets[0].ports[0].port == 8080
            })
        })
        .await;
        let ep = endpoints_now(&h, "web").await.unwrap();
        let m = ep.metadata.unwrap();
        assert_eq!(m.labels.get("team").map(String::as_str), Some("a"));
        let rv = m.resource_version;

        // Nothing changes: no write.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let again = endpoints_now(&h, "web").await.unwrap();
        assert_eq!(again.metadata.unwrap().resource_version, rv);

        // A relabelled pod leaves; a new one arrives.
        h.patch(
            "Pod",
            "default",
            "a",
            "merge",
            r#"{"metadata":{"labels":{"app":"gone"}}}"#,
            false,
        )
        .await
        .unwrap();
        start_pod(&h, "d", "web", "10.0.0.4", true).await;
        testing::eventually("endpoints follow", 10, || async {
            endpoints_now(&h, "web").await.is_some_and(|e| {
                e.subsets.len() == 1
                    && ips(&e.subsets[0].addresses) == ["10.0.0.4"]
                    && ips(&e.subsets[0].not_ready_addresses) == ["10.0.0.2"]
            })
        })
        .await;

        // The Service goes; so do its Endpoints.
        h.delete("Service", "default", "web", "", None)
            .await
            .unwrap();
        testing::eventually("endpoints deleted", 10, || async {
            endpoints_now(&h, "web").await.is_none()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            ips(&endpoints_now(&h, "handmade").await.unwrap().subsets[0].addresses),
            ["192.168.1.1"]
        );
        assert_eq!(
            ips(&endpoints_now(&h, "external").await.unwrap().subsets[0].addresses),
            ["192.168.1.1"]
        );
    }
}
