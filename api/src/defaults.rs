//! Defaulting applied on create: fills in the fields Kubernetes fills in when
//! a manifest leaves them unset (restart and DNS policies, image pull policy,
//! probe timings, replicas, service types, ...). Only unset or empty fields are
//! touched, so applying the defaults twice changes nothing.

use crate::proto::{self, object::Kind, Object};

/// The grace period a pod gets when it does not choose one.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// The scheduler that places pods that do not name one.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// Where a container's termination message is read from.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Session affinity timeout for `ClientIP` affinity (3 hours).
pub const DEFAULT_CLIENT_IP_TIMEOUT_SECONDS: i32 = 10800;

/// Sets every default for the object's kind, only where the field is unset.
pub fn apply_defaults(obj: &mut Object) {
    let Some(kind) = obj.kind.as_mut() else {
        return;
    };
    match kind {
        Kind::Pod(pod) => {
            if let Some(spec) = pod.spec.as_mut() {
                default_pod_spec(spec);
                default_requests_from_limits(spec);
            }
        }
        Kind::ReplicationController(rc) => default_replication_controller(rc),
        Kind::ReplicaSet(rs) => {
            if let Some(spec) = rs.spec.as_mut() {
                spec.replicas.get_or_insert(1);
                if let Some(t) = spec.template.as_mut() {
                    default_pod_template(t);
                }
            }
        }
        Kind::DaemonSet(ds) => {
            if let Some(spec) = ds.spec.as_mut() {
                default_daemon_set_spec(spec);
            }
        }
        Kind::Service(svc) => {
            if let Some(spec) = svc.spec.as_mut() {
                default_service_spec(spec);
            }
        }
        Kind::Endpoints(ep) => {
            for port in ep.subsets.iter_mut().flat_map(|s| s.ports.iter_mut()) {
                set_if_empty(&mut port.protocol, "TCP");
            }
        }
        Kind::Namespace(ns) => {
            let spec = ns.spec.get_or_insert_with(Default::default);
            if spec.finalizers.is_empty() {
                spec.finalizers.push("kubernetes".to_string());
            }
            let status = ns.status.get_or_insert_with(Default::default);
            set_if_empty(&mut status.phase, "Active");
        }
        Kind::Node(node) => {
            if let Some(status) = node.status.as_mut() {
                if status.allocatable.is_empty() && !status.capacity.is_empty() {
                    status.allocatable = status.capacity.clone();
                }
            }
        }
        Kind::Event(_) | Kind::Lease(_) => {}
    }
}

fn set_if_empty(field: &mut String, value: &str) {
    if field.is_empty() {
        *field = value.to_string();
    }
}

fn set_if_zero(field: &mut i32, value: i32) {
    if *field == 0 {
        *field = value;
    }
}

/// Whether an image reference means the `latest` tag: an explicit `:latest`,
/// or no tag and no digest. A registry `host:port` prefix is not a tag
/// (`localhost:5000/busybox` has no tag).
pub fn image_tag_is_latest(image: &str) -> bool {
    let (name, has_digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    // A tag can only follow the last path component.
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => !has_digest,
    }
}

/// The defaults of a pod template: those of its pod spec.
pub fn default_pod_template(t: &mut proto::PodTemplateSpec) {
    if let Some(spec) = t.spec.as_mut() {
        default_pod_spec(spec);
    }
}

/// The defaults of a pod spec, wherever it appears (a Pod or a template).
pub fn default_pod_spec(spec: &mut proto::PodSpec) {
    set_if_empty(&mut spec.restart_policy, "Always");
    set_if_empty(&mut spec.dns_policy, "ClusterFirst");
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
    set_if_empty(&mut spec.scheduler_name, DEFAULT_SCHEDULER_NAME);
    let host_network = spec.host_network;
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut())
    {
        default_container(c, host_network);
    }
    for v in &mut spec.volumes {
        // A volume with no source is an emptyDir.
        if v.empty_dir.is_none() && v.host_path.is_none() {
            v.empty_dir = Some(proto::EmptyDirVolumeSource::default());
        }
    }
}

fn default_container(c: &mut proto::Container, host_network: bool) {
    if c.image_pull_policy.is_empty() {
        c.image_pull_policy = if image_tag_is_latest(&c.image) {
            "Always"
        } else {
            "IfNotPresent"
        }
        .to_string();
    }
    set_if_empty(
        &mut c.termination_message_path,
        DEFAULT_TERMINATION_MESSAGE_PATH,
    );
    for port in &mut c.ports {
        set_if_empty(&mut port.protocol, "TCP");
        // On the host's network the container's port is the host's port.
        if host_network && port.host_port == 0 {
            port.host_port = port.container_port;
        }
    }
    for probe in [
        c.liveness_probe.as_mut(),
        c.readiness_probe.as_mut(),
        c.startup_probe.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
}

fn default_probe(p: &mut proto::Probe) {
    set_if_zero(&mut p.timeout_seconds, 1);
    set_if_zero(&mut p.period_seconds, 10);
    set_if_zero(&mut p.success_threshold, 1);
    set_if_zero(&mut p.failure_threshold, 3);
    if let Some(h) = p.http_get.as_mut() {
        set_if_empty(&mut h.path, "/");
        set_if_empty(&mut h.scheme, "HTTP");
    }
}

/// For a Pod (not a template), a resource with a limit and no request
/// requests its limit.
fn default_requests_from_limits(spec: &mut proto::PodSpec) {
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut())
    {
        if let Some(r) = c.resources.as_mut() {
            for (name, limit) in &r.limits {
                r.requests
                    .entry(name.clone())
                    .or_insert_with(|| limit.clone());
            }
        }
    }
}

fn default_replication_controller(rc: &mut proto::ReplicationController) {
    let Some(spec) = rc.spec.as_mut() else {
        return;
    };
    spec.replicas.get_or_insert(1);
    let Some(t) = spec.template.as_mut() else {
        return;
    };
    default_pod_template(t);
    let labels = t
        .metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    if labels.is_empty() {
        return;
    }
    if spec.selector.is_empty() {
        spec.selector = labels.clone();
    }
    let meta = rc.metadata.get_or_insert_with(Default::default);
    if meta.labels.is_empty() {
        meta.labels = labels;
    }
}

fn default_daemon_set_spec(spec: &mut proto::DaemonSetSpec) {
    let strategy = spec.update_strategy.get_or_insert_with(Default::default);
    set_if_empty(&mut strategy.r#type, "RollingUpdate");
    if strategy.r#type == "RollingUpdate" {
        let ru = strategy.rolling_update.get_or_insert_with(Default::default);
        set_if_empty(&mut ru.max_unavailable, "1");
        set_if_empty(&mut ru.max_surge, "0");
    }
    spec.revision_history_limit.get_or_insert(10);
    if let Some(t) = spec.template.as_mut() {
        default_pod_template(t);
    }
}

fn default_service_spec(spec: &mut proto::ServiceSpec) {
    set_if_empty(&mut spec.r#type, "ClusterIP");
    set_if_empty(&mut spec.session_affinity, "None");
    if spec.session_affinity == "ClientIP" {
        spec.session_affinity_config
            .get_or_insert_with(Default::default)
            .client_ip
            .get_or_insert_with(Default::default)
            .timeout_seconds
            .get_or_insert(DEFAULT_CLIENT_IP_TIMEOUT_SECONDS);
    }
    for port in &mut spec.ports {
        set_if_empty(&mut port.protocol, "TCP");
        if (port.target_port.is_empty() || port.target_port == "0") && port.port != 0 {
            port.target_port = port.port.to_string();
        }
    }
    if (spec.r#type == "NodePort" || spec.r#type == "LoadBalancer")
        && spec.external_traffic_policy.is_empty()
    {
        spec.external_traffic_policy = "Cluster".to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::*;
    use std::collections::HashMap;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn container(name: &str, image: &str) -> Container {
        Container {
            name: name.into(),
            image: image.into(),
            ..Default::default()
        }
    }

    fn pod(spec: PodSpec) -> Object {
        Object {
            kind: Some(Kind::Pod(Pod {
                metadata: Some(ObjectMeta {
                    name: "web".into(),
                    ..Default::default()
                }),
                spec: Some(spec),
                ..Default::default()
            })),
        }
    }

    fn pod_spec_of(obj: &Object) -> &PodSpec {
        match &obj.kind {
            Some(Kind::Pod(Pod {
                spec: Some(spec), ..
            })) => spec,
            other => panic!("not a pod with a spec: {other:?}"),
        }
    }

    fn defaulted(mut obj: Object) -> Object {
        apply_defaults(&mut obj);
        let mut again = obj.clone();
        apply_defaults(&mut again);
        assert_eq!(again, obj, "defaulting must be idempotent");
        obj
    }

    fn template(labels: &[(&str, &str)]) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: map(labels),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![container("app", "nginx")],
                ..Default::default()
            }),
        }
    }

    fn assert_template_defaulted(t: &Option<PodTemplateSpec>) {
        let spec = t
            .as_ref()
            .and_then(|t| t.spec.as_ref())
            .expect("template spec");
        assert_eq!(spec.restart_policy, "Always");
        assert_eq!(spec.dns_policy, "ClusterFirst");
        assert_eq!(spec.scheduler_name, "default-scheduler");
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.containers[0].image_pull_policy, "Always");
    }

    #[test]
    fn latest_tag_detection() {
        for latest in [
            "nginx",
            "nginx:latest",
            "library/nginx",
            "docker.io/library/nginx",
            "localhost:5000/busybox",
            "localhost:5000/busybox:latest",
            "registry.example.com:443/team/app",
            "nginx:latest@sha256:0123",
        ] {
            assert!(image_tag_is_latest(latest), "{latest}");
        }
        for pinned in [
            "nginx:1.25",
            "nginx:1.25-alpine",
            "localhost:5000/busybox:1.36",
            "registry.example.com:443/team/app:v2",
            "nginx@sha256:0123456789abcdef",
            "localhost:5000/busybox@sha256:abc",
            "busybox:stable",
            "busybox:Latest",
        ] {
            assert!(!image_tag_is_latest(pinned), "{pinned}");
        }
    }

    #[test]
    fn pod_spec_defaults() {
        let obj = defaulted(pod(PodSpec {
            containers: vec![
                Container {
                    ports: vec![ContainerPort {
                        container_port: 80,
                        ..Default::default()
                    }],
                    ..container("web", "nginx:1.25")
                },
                container("sidecar", "localhost:5000/busybox"),
            ],
            init_containers: vec![container("init", "busybox:latest")],
            ..Default::default()
        }));
        let spec = pod_spec_of(&obj);
        assert_eq!(spec.restart_policy, "Always");
        assert_eq!(spec.dns_policy, "ClusterFirst");
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.scheduler_name, "default-scheduler");
        assert!(spec.tolerations.is_empty());
        let web = &spec.containers[0];
        assert_eq!(web.image_pull_policy, "IfNotPresent");
        assert_eq!(web.termination_message_path, "/dev/termination-log");
        assert_eq!(web.ports[0].protocol, "TCP");
        assert_eq!(web.ports[0].host_port, 0);
        assert_eq!(spec.containers[1].image_pull_policy, "Always");
        assert_eq!(spec.init_containers[0].image_pull_policy, "Always");
        assert_eq!(
            spec.init_containers[0].termination_message_path,
            "/dev/termination-log"
        );
    }

    #[test]
    fn pod_spec_defaults_keep_what_is_set() {
        let obj = defaulted(pod(PodSpec {
            containers: vec![Container {
                image_pull_policy: "Never".into(),
                termination_message_path: "/tmp/msg".into(),
                ports: vec![ContainerPort {
                    container_port: 53,
                    protocol: "UDP".into(),
                    ..Default::default()
                }],
                ..container("dns", "coredns:latest")
            }],
            restart_policy: "Never".into(),
            dns_policy: "Default".into(),
            termination_grace_period_seconds: Some(0),
            scheduler_name: "my-scheduler".into(),
            ..Default::default()
        }));
        let spec = pod_spec_of(&obj);
        assert_eq!(spec.restart_policy, "Never");
        assert_eq!(spec.dns_policy, "Default");
        assert_eq!(spec.termination_grace_period_seconds, Some(0));
        assert_eq!(spec.scheduler_name, "my-scheduler");
        let c = &spec.containers[0];
        assert_eq!(c.image_pull_policy, "Never");
        assert_eq!(c.termination_message_path, "/tmp/msg");
        assert_eq!(c.ports[0].protocol, "UDP");
    }

    #[test]
    fn host_network_ports_and_volumes() {
        let obj = defaulted(pod(PodSpec {
            host_network: true,
            containers: vec![Container {
                ports: vec![ContainerPort {
                    container_port: 9100,
                    ..Default::default()
                }],
                ..container("exporter", "node-exporter:v1")
            }],
            volumes: vec![
                Volume {
                    name: "scratch".into(),
                    ..Default::default()
                },
                Volume {
                    name: "logs".into(),
                    empty_dir: None,
                    host_path: Some(HostPathVolumeSource {
                        path: "/var/log".into(),
                        r#type: String::new(),
                    }),
                },
            ],
            ..Default::default()
        }));
        let spec = pod_spec_of(&obj);
        assert_eq!(spec.containers[0].ports[0].host_port, 9100);
        assert!(spec.volumes[0].empty_dir.is_some());
        assert!(spec.volumes[1].empty_dir.is_none());
    }

    #[test]
    fn probe_defaults() {
        let obj = defaulted(pod(PodSpec {
            containers: vec![Container {
                liveness_probe: Some(Probe {
                    http_get: Some(HttpGetAction {
                        port: "8080".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                readiness_probe: Some(Probe {
                    tcp_socket: Some(TcpSocketAction {
                        port: "http".into(),
                        host: String::new(),
                    }),
                    period_seconds: 5,
                    failure_threshold: 1,
                    ..Default::default()
                }),
                startup_probe: Some(Probe {
                    http_get: Some(HttpGetAction {
                        path: "/ready".into(),
                        scheme: "HTTPS".into(),
                        port: "443".into(),
                        ..Default::default()
                    }),
                    timeout_seconds: 7,
                    ..Default::default()
                }),
                ..container("web", "nginx:1")
            }],
            ..Default::default()
        }));
        let c = &pod_spec_of(&obj).containers[0];
        let live = c.liveness_probe.as_ref().expect("liveness");
        assert_eq!(
            (
                live.timeout_seconds,
                live.period_seconds,
                live.success_threshold,
                live.failure_threshold
            ),
            (1, 10, 1, 3)
        );
        let http = live.http_get.as_ref().expect("httpGet");
        assert_eq!((http.path.as_str(), http.scheme.as_str()), ("/", "HTTP"));
        let ready = c.readiness_probe.as_ref().expect("readiness");
        assert_eq!((ready.period_seconds, ready.failure_threshold), (5, 1));
        assert_eq!(ready.timeout_seconds, 1);
        let startup = c.startup_probe.as_ref().expect("startup");
        assert_eq!(startup.timeout_seconds, 7);
        let http = startup.http_get.as_ref().expect("httpGet");
        assert_eq!(
            (http.path.as_str(), http.scheme.as_str()),
            ("/ready", "HTTPS")
        );
        assert_eq!(startup.initial_delay_seconds, 0);
    }

    #[test]
    fn pod_requests_default_to_limits() {
        let obj = defaulted(pod(PodSpec {
            containers: vec![Container {
                resources: Some(ResourceRequirements {
                    limits: map(&[("cpu", "500m"), ("memory", "128Mi")]),
                    requests: map(&[("cpu", "100m")]),
                }),
                ..container("web", "nginx:1")
            }],
            ..Default::default()
        }));
        let r = pod_spec_of(&obj).containers[0]
            .resources
            .as_ref()
            .expect("resources");
        assert_eq!(r.requests, map(&[("cpu", "100m"), ("memory", "128Mi")]));
    }

    #[test]
    fn pod_without_spec_is_left_alone() {
        let mut obj = Object {
            kind: Some(Kind::Pod(Pod::default())),
        };
        apply_defaults(&mut obj);
        assert_eq!(obj.kind, Some(Kind::Pod(Pod::default())));
        let mut none = Object { kind: None };
        apply_defaults(&mut none);
        assert_eq!(none.kind, None);
    }

    #[test]
    fn replication_controller_defaults() {
        let obj = defaulted(Object {
            kind: Some(Kind::ReplicationController(ReplicationController {
                metadata: Some(ObjectMeta {
                    name: "web".into(),
                    ..Default::default()
                }),
                spec: Some(ReplicationControllerSpec {
                    template: Some(template(&[("app", "web")])),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        });
        let Some(Kind::ReplicationController(rc)) = &obj.kind else {
            panic!("kind changed");
        };
        let spec = rc.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.selector, map(&[("app", "web")]));
        assert_eq!(
            rc.metadata.as_ref().map(|m| m.labels.clone()),
            Some(map(&[("app", "web")]))
        );
        assert_template_defaulted(&spec.template);
        // The result passes validation.
        assert!(crate::validation::validate(&obj).is_ok());
    }

    #[test]
    fn replication_controller_keeps_its_selector_and_labels() {
        let obj = defaulted(Object {
            kind: Some(Kind::ReplicationController(ReplicationController {
                metadata: Some(ObjectMeta {
                    name: "web".into(),
                    labels: map(&[("team", "a")]),
                    ..Default::default()
                }),
                spec: Some(ReplicationControllerSpec {
                    replicas: Some(0),
                    selector: map(&[("app", "web")]),
                    template: Some(template(&[("app", "web"), ("v", "1")])),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        });
        let Some(Kind::ReplicationController(rc)) = &obj.kind else {
            panic!("kind changed");
        };
        let spec = rc.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(0));
        assert_eq!(spec.selector, map(&[("app", "web")]));
        assert_eq!(
            rc.metadata.as_ref().map(|m| m.labels.clone()),
            Some(map(&[("team", "a")]))
        );
    }

    #[test]
    fn replica_set_defaults() {
        let obj = defaulted(Object {
            kind: Some(Kind::ReplicaSet(ReplicaSet {
                spec: Some(ReplicaSetSpec {
                    template: Some(template(&[("app", "web")])),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        });
        let Some(Kind::ReplicaSet(rs)) = &obj.kind else {
            panic!("kind changed");
        };
        let spec = rs.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(1));
        assert!(
            spec.selector.is_none(),
            "a ReplicaSet's selector is not defaulted"
        );
        assert_template_defaulted(&spec.template);

        let obj = defaulted(Object {
            kind: Some(Kind::ReplicaSet(ReplicaSet {
                spec: Some(ReplicaSetSpec {
                    replicas: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        });
        let Some(Kind::ReplicaSet(rs)) = &obj.kind else {
            panic!("kind changed");
        };
        assert_eq!(rs.spec.as_ref().and_then(|s| s.replicas), Some(0));
    }

    #[test]
    fn daemon_set_defaults() {
        let obj = defaulted(Object {
            kind: Some(Kind::DaemonSet(DaemonSet {
                spec: Some(DaemonSetSpec {
                    template: Some(template(&[("app", "agent")])),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        });
        let Some(Kind::DaemonSet(ds)) = &obj.kind else {
            panic!("kind changed");
        };
        let spec = ds.spec.as_ref().expect("spec");
        let strategy = spec.update_strategy.as_ref().expect("strategy");
        assert_eq!(strategy.r#type, "RollingUpdate");
        let ru = strategy.rolling_update.as_ref().expect("rollingUpdate");
        assert_eq!(
            (ru.max_unavailable.as_str(), ru.max_surge.as_str()),
            ("1", "0")
        );
        assert_eq!(spec.revision_history_limit, Some(10));
        assert_template_defaulted(&spec.template);

        let obj = defaulted(Object {
            kind: Some(Kind::DaemonSet(DaemonSet {
                spec: Some(DaemonSetSpec {
                    update_strategy: Some(DaemonSetUpdateStrategy {
                        r#type: "OnDelete".into(),
                        rolling_update: None,
                    }),
                    revision_history_limit: Some(2),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        });
        let Some(Kind::DaemonSet(ds)) = &obj.kind else {
            panic!("kind changed");
        };
        let spec = ds.spec.as_ref().expect("spec");
        let strategy = spec.update_strategy.as_ref().expect("strategy");
        assert_eq!(strategy.r#type, "OnDelete");
        assert!(strategy.rolling_update.is_none());
        assert_eq!(spec.revision_history_limit, Some(2));
    }

    fn service(spec: ServiceSpec) -> ServiceSpec {
        let obj = defaulted(Object {
            kind: Some(Kind::Service(Service {
                spec: Some(spec),
                ..Default::default()
            })),
        });
        match obj.kind {
            Some(Kind::Service(Service {
                spec: Some(spec), ..
            })) => spec,
            other => panic!("not a service: {other:?}"),
        }
    }

    #[test]
    fn service_defaults() {
        let spec = service(ServiceSpec {
            ports: vec![
                ServicePort {
                    port: 80,
                    ..Default::default()
                },
                ServicePort {
                    port: 53,
                    protocol: "UDP".into(),
                    target_port: "dns".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        assert_eq!(spec.r#type, "ClusterIP");
        assert_eq!(spec.session_affinity, "None");
        assert!(spec.session_affinity_config.is_none());
        assert_eq!(spec.external_traffic_policy, "");
        assert_eq!(spec.ports[0].protocol, "TCP");
        assert_eq!(spec.ports[0].target_port, "80");
        assert_eq!(spec.ports[1].protocol, "UDP");
        assert_eq!(spec.ports[1].target_port, "dns");

        let spec = service(ServiceSpec {
            r#type: "NodePort".into(),
            session_affinity: "ClientIP".into(),
            ports: vec![ServicePort {
                port: 443,
                target_port: "0".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert_eq!(spec.r#type, "NodePort");
        assert_eq!(spec.external_traffic_policy, "Cluster");
        assert_eq!(spec.ports[0].target_port, "443");
        assert_eq!(
            spec.session_affinity_config
                .and_then(|c| c.client_ip)
                .and_then(|c| c.timeout_seconds),
            Some(10800)
        );

        let spec = service(ServiceSpec {
            session_affinity: "ClientIP".into(),
            session_affinity_config: Some(SessionAffinityConfig {
                client_ip: Some(ClientIpConfig {
                    timeout_seconds: Some(60),
                }),
            }),
            ..Default::default()
        });
        assert_eq!(
            spec.session_affinity_config
                .and_then(|c| c.client_ip)
                .and_then(|c| c.timeout_seconds),
            Some(60)
        );
    }

    #[test]
    fn namespace_defaults() {
        let obj = defaulted(Object {
            kind: Some(Kind::Namespace(Namespace {
                metadata: Some(ObjectMeta {
                    name: "team-a".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        });
        let Some(Kind::Namespace(ns)) = &obj.kind else {
            panic!("kind changed");
        };
        assert_eq!(
            ns.spec.as_ref().map(|s| s.finalizers.clone()),
            Some(vec!["kubernetes".to_string()])
        );
        assert_eq!(ns.status.as_ref().map(|s| s.phase.as_str()), Some("Active"));
        assert!(crate::validation::validate(&obj).is_ok());

        let obj = defaulted(Object {
            kind: Some(Kind::Namespace(Namespace {
                status: Some(NamespaceStatus {
                    phase: "Terminating".into(),
                }),
                ..Default::default()
            })),
        });
        let Some(Kind::Namespace(ns)) = &obj.kind else {
            panic!("kind changed");
        };
        assert_eq!(
            ns.status.as_ref().map(|s| s.phase.as_str()),
            Some("Terminating")
        );
    }

    #[test]
    fn node_endpoints_event_lease_defaults() {
        let obj = defaulted(Object {
            kind: Some(Kind::Node(Node {
                status: Some(NodeStatus {
                    capacity: map(&[("cpu", "4"), ("pods", "110")]),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        });
        let Some(Kind::Node(node)) = &obj.kind else {
            panic!("kind changed");
        };
        assert_eq!(
            node.status.as_ref().map(|s| s.allocatable.clone()),
            Some(map(&[("cpu", "4"), ("pods", "110")]))
        );

        let obj = defaulted(Object {
            kind: Some(Kind::Endpoints(Endpoints {
                subsets: vec![EndpointSubset {
                    ports: vec![EndpointPort {
                        port: 80,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })),
        });
        let Some(Kind::Endpoints(ep)) = &obj.kind else {
            panic!("kind changed");
        };
        assert_eq!(ep.subsets[0].ports[0].protocol, "TCP");

        for body in [Kind::Event(Event::default()), Kind::Lease(Lease::default())] {
            let mut obj = Object {
                kind: Some(body.clone()),
            };
            apply_defaults(&mut obj);
            assert_eq!(obj.kind, Some(body));
        }
    }

    #[test]
    fn defaulted_pod_still_validates() {
        let obj = defaulted(pod(PodSpec {
            containers: vec![Container {
                ports: vec![ContainerPort {
                    container_port: 80,
                    name: "http".into(),
                    ..Default::default()
                }],
                liveness_probe: Some(Probe {
                    http_get: Some(HttpGetAction {
                        port: "http".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..container("web", "nginx")
            }],
            ..Default::default()
        }));
        if let Err(e) = crate::validation::validate(&obj) {
            panic!("defaulted pod should validate: {e}");
        }
    }
}
