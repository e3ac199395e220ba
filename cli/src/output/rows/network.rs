//! Service and Endpoints rows.

use super::{join_labels, or_none};
use crate::output::age::age;
use chrono::{DateTime, Utc};
use rkube_api::proto::{Endpoints, Service, ServicePort};

pub fn service_columns(wide: bool) -> Vec<&'static str> {
    let mut c = vec![
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
    ];
    if wide {
        c.push("SELECTOR");
    }
    c
}

pub fn endpoints_columns() -> Vec<&'static str> {
    vec!["NAME", "ENDPOINTS", "AGE"]
}

fn protocol(p: &str) -> &str {
    if p.is_empty() {
        "TCP"
    } else {
        p
    }
}

/// `80/TCP` or `80:30080/TCP`, comma-joined; `<none>` without ports.
pub fn ports(ports: &[ServicePort]) -> String {
    let list: Vec<String> = ports
        .iter()
        .map(|p| {
            if p.node_port > 0 {
                format!("{}:{}/{}", p.port, p.node_port, protocol(&p.protocol))
            } else {
                format!("{}/{}", p.port, protocol(&p.protocol))
            }
        })
        .collect();
    or_none(&list.join(","))
}

/// The type, defaulting to ClusterIP.
pub fn service_type(s: &Service) -> String {
    let t = s.spec.as_ref().map(|s| s.r#type.as_str()).unwrap_or("");
    if t.is_empty() {
        "ClusterIP".into()
    } else {
        t.to_string()
    }
}

/// EXTERNAL-IP as kubectl works it out per service type.
pub fn external_ip(s: &Service) -> String {
    let spec = s.spec.clone().unwrap_or_default();
    let lb: Vec<String> = s
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
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default();
    match service_type(s).as_str() {
        "ExternalName" => or_none(&spec.external_name),
        "LoadBalancer" => {
            let mut all = lb;
            all.extend(spec.external_ips.iter().cloned());
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        _ => or_none(&spec.external_ips.join(",")),
    }
}

pub fn service_row(s: &Service, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let meta = s.metadata.clone().unwrap_or_default();
    let spec = s.spec.clone().unwrap_or_default();
    let mut r = vec![
        meta.name.clone(),
        service_type(s),
        or_none(&spec.cluster_ip),
        external_ip(s),
        ports(&spec.ports),
        age(&meta.creation_timestamp, now),
    ];
    if wide {
        r.push(or_none(&join_labels(&spec.selector)));
    }
    r
}

/// Up to three `ip:port` endpoints, then ` + N more...`.
pub fn endpoints_text(e: &Endpoints) -> String {
    const MAX: usize = 3;
    let mut all: Vec<String> = Vec::new();
    for subset in &e.subsets {
        if subset.ports.is_empty() {
            all.extend(subset.addresses.iter().map(|a| a.ip.clone()));
        } else {
            for port in &subset.ports {
                for a in &subset.addresses {
                    all.push(format!("{}:{}", a.ip, port.port));
                }
            }
        }
    }
    if all.is_empty() {
        return "<none>".into();
    }
    let shown = all.iter().take(MAX).cloned().collect::<Vec<_>>().join(",");
    if all.len() > MAX {
        format!("{shown} + {} more...", all.len() - MAX)
    } else {
        shown
    }
}

pub fn endpoints_row(e: &Endpoints, now: DateTime<Utc>) -> Vec<String> {
    let meta = e.metadata.clone().unwrap_or_default();
    vec![
        meta.name.clone(),
        endpoints_text(e),
        age(&meta.creation_timestamp, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::age::parse_time;
    use rkube_api::proto::{
        EndpointAddress, EndpointPort, EndpointSubset, ObjectMeta, ServiceSpec,
    };

    fn port(port: i32, node_port: i32, proto: &str) -> ServicePort {
        ServicePort {
            port,
            node_port,
            protocol: proto.into(),
            ..Default::default()
        }
    }

    #[test]
    fn ports_show_node_ports_and_protocols() {
        assert_eq!(ports(&[port(80, 0, "TCP")]), "80/TCP");
        assert_eq!(ports(&[port(80, 30080, "TCP")]), "80:30080/TCP");
        assert_eq!(
            ports(&[port(53, 0, "UDP"), port(53, 0, "")]),
            "53/UDP,53/TCP"
        );
        assert_eq!(ports(&[]), "<none>");
    }

    #[test]
    fn service_rows() {
        let now = parse_time("2024-03-01T12:00:00Z").unwrap();
        let s = Service {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                creation_timestamp: "2024-03-01T11:00:00Z".into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                r#type: "NodePort".into(),
                cluster_ip: "10.96.0.20".into(),
                ports: vec![port(80, 30080, "TCP")],
                selector: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            service_row(&s, true, now),
            [
                "web",
                "NodePort",
                "10.96.0.20",
                "<none>",
                "80:30080/TCP",
                "60m",
                "app=web"
            ]
        );
        let mut lb = s.clone();
        if let Some(spec) = lb.spec.as_mut() {
            spec.r#type = "LoadBalancer".into();
        }
        assert_eq!(external_ip(&lb), "<pending>");
        let mut plain = s;
        if let Some(spec) = plain.spec.as_mut() {
            spec.r#type.clear();
        }
        assert_eq!(service_type(&plain), "ClusterIP");
    }

    #[test]
    fn endpoints_are_capped_at_three() {
        let addr = |ip: &str| EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        };
        let mut e = Endpoints {
            subsets: vec![EndpointSubset {
                addresses: vec![addr("10.0.0.1"), addr("10.0.0.2")],
                ports: vec![EndpointPort {
                    port: 80,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(endpoints_text(&e), "10.0.0.1:80,10.0.0.2:80");
        e.subsets[0]
            .addresses
            .extend([addr("10.0.0.3"), addr("10.0.0.4"), addr("10.0.0.5")]);
        assert_eq!(
            endpoints_text(&e),
            "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."
        );
        assert_eq!(endpoints_text(&Endpoints::default()), "<none>");
    }
}
