//! The service page.

use super::{annotations_block, events_block, labels_block, Related, Writer};
use crate::output::rows::{join_labels, or_none};
use rkube_api::proto::{Endpoints, Service, ServicePort};

/// `ip:port` endpoints serving one service port (matched by port name).
pub fn endpoints_for(ep: Option<&Endpoints>, port: &ServicePort) -> String {
    let Some(ep) = ep else {
        return "<none>".into();
    };
    let mut list = Vec::new();
    for subset in &ep.subsets {
        for p in subset.ports.iter().filter(|p| p.name == port.name) {
            for a in &subset.addresses {
                list.push(format!("{}:{}", a.ip, p.port));
            }
        }
    }
    or_none(&list.join(","))
}

pub fn describe(s: &Service, related: &Related) -> String {
    let meta = s.metadata.clone().unwrap_or_default();
    let spec = s.spec.clone().unwrap_or_default();
    let mut w = Writer::new();
    w.kv(0, "Name", &meta.name);
    w.kv(0, "Namespace", &meta.namespace);
    labels_block(&mut w, 0, "Labels", &meta.labels);
    annotations_block(&mut w, 0, &meta.annotations);
    w.kv(0, "Selector", &or_none(&join_labels(&spec.selector)));
    let svc_type = crate::output::rows::service_type(s);
    w.kv(0, "Type", &svc_type);
    w.kv_or_none(0, "IP", &spec.cluster_ip);
    let ips = if spec.cluster_ips.is_empty() {
        spec.cluster_ip.clone()
    } else {
        spec.cluster_ips.join(",")
    };
    w.kv_or_none(0, "IPs", &ips);
    if !spec.external_ips.is_empty() {
        w.kv(0, "External IPs", &spec.external_ips.join(","));
    }
    if !spec.load_balancer_ip.is_empty() {
        w.kv(0, "IP", &spec.load_balancer_ip);
    }
    if !spec.external_name.is_empty() {
        w.kv(0, "External Name", &spec.external_name);
    }
    let ingress: Vec<String> = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .map(|lb| {
            lb.ingress
                .iter()
                .map(|i| {
                    if i.ip.is_empty() {
                        i.hostname.clone()
                    } else {
                        i.ip.clone()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if !ingress.is_empty() {
        w.kv(0, "LoadBalancer Ingress", &ingress.join(", "));
    }
    for p in &spec.ports {
        let name = if p.name.is_empty() {
            "<unset>"
        } else {
            &p.name
        };
        let proto = if p.protocol.is_empty() {
            "TCP"
        } else {
            &p.protocol
        };
        w.line(0, &format!("Port:\t{name}\t{}/{proto}", p.port));
        let target = if p.target_port.is_empty() {
            p.port.to_string()
        } else {
            p.target_port.clone()
        };
        if target.parse::<i32>().is_ok() {
            w.kv(0, "TargetPort", &format!("{target}/{proto}"));
        } else {
            w.kv(0, "TargetPort", &target);
        }
        if p.node_port != 0 {
            w.line(0, &format!("NodePort:\t{name}\t{}/{proto}", p.node_port));
        }
        w.kv(
            0,
            "Endpoints",
            &endpoints_for(related.endpoints.as_ref(), p),
        );
    }
    let affinity = if spec.session_affinity.is_empty() {
        "None"
    } else {
        &spec.session_affinity
    };
    w.kv(0, "Session Affinity", affinity);
    if !spec.external_traffic_policy.is_empty() {
        w.kv(0, "External Traffic Policy", &spec.external_traffic_policy);
    }
    events_block(&mut w, &related.events, related.now);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::age::parse_time;
    use rkube_api::proto::{
        EndpointAddress, EndpointPort, EndpointSubset, ObjectMeta, ServiceSpec,
    };

    #[test]
    fn service_page_lists_ports_and_endpoints() {
        let s = Service {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                r#type: "NodePort".into(),
                cluster_ip: "10.96.0.20".into(),
                selector: [("app".to_string(), "web".to_string())].into(),
                ports: vec![ServicePort {
                    port: 80,
                    target_port: "8080".into(),
                    node_port: 30080,
                    protocol: "TCP".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut related = Related::empty(parse_time("2024-03-01T12:00:00Z").unwrap());
        related.endpoints = Some(Endpoints {
            subsets: vec![EndpointSubset {
                addresses: vec![EndpointAddress {
                    ip: "10.244.1.5".into(),
                    ..Default::default()
                }],
                ports: vec![EndpointPort {
                    port: 8080,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        let page = describe(&s, &related);
        let want = "\
Name:              web
Namespace:         default
Labels:            <none>
Annotations:       <none>
Selector:          app=web
Type:              NodePort
IP:                10.96.0.20
IPs:               10.96.0.20
Port:              <unset>  80/TCP
TargetPort:        8080/TCP
NodePort:          <unset>  30080/TCP
Endpoints:         10.244.1.5:8080
Session Affinity:  None
Events:  <none>
";
        assert_eq!(page, want);
    }
}
