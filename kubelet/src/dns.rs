//! A pod's resolver configuration from its dnsPolicy and dnsConfig, as
//! Kubernetes computes it.

use rkube_api::proto::PodSpec;
use rkube_runtime::proto::DnsConfig;

/// The node's own resolver settings (for dnsPolicy Default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostResolv {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

pub fn parse_resolv_conf(text: &str) -> HostResolv {
    let mut r = HostResolv::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => r.servers.extend(f.next().map(str::to_string)),
            Some("search") | Some("domain") => r.searches = f.map(str::to_string).collect(),
            Some("options") => r.options.extend(f.map(str::to_string)),
            _ => {}
        }
    }
    r
}

/// What goes into the pod's resolv.conf; `Err` names a problem with the
/// pod's settings.
pub fn pod_dns(
    spec: &PodSpec,
    namespace: &str,
    cluster_dns: &[String],
    cluster_domain: &str,
    host: &HostResolv,
) -> Result<DnsConfig, String> {
    let policy = if spec.dns_policy.is_empty() {
        "ClusterFirst"
    } else {
        spec.dns_policy.as_str()
    };
    let cluster = |cfg: &mut DnsConfig| {
        cfg.servers = cluster_dns.to_vec();
        cfg.searches = vec![
            format!("{namespace}.svc.{cluster_domain}"),
            format!("svc.{cluster_domain}"),
            cluster_domain.to_string(),
        ];
        cfg.searches.extend(host.searches.iter().cloned());
        cfg.options = vec!["ndots:5".into()];
    };
    let default = |cfg: &mut DnsConfig| {
        cfg.servers = host.servers.clone();
        cfg.searches = host.searches.clone();
        cfg.options = host.options.clone();
    };
    let mut cfg = DnsConfig::default();
    match policy {
        "ClusterFirstWithHostNet" => cluster(&mut cfg),
        "ClusterFirst" if spec.host_network || cluster_dns.is_empty() => default(&mut cfg),
        "ClusterFirst" => cluster(&mut cfg),
        "Default" => default(&mut cfg),
        "None" => {
            if spec.dns_config.is_none() {
                return Err("spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None".into());
            }
        }
        other => {
            return Err(format!(
                "spec.dnsPolicy: Unsupported value: {other:?}: supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\""
            ))
        }
    }
    if let Some(extra) = &spec.dns_config {
        for s in &extra.nameservers {
            if !cfg.servers.contains(s) {
                cfg.servers.push(s.clone());
            }
        }
        for s in &extra.searches {
            if !cfg.searches.contains(s) {
                cfg.searches.push(s.clone());
            }
        }
        for o in &extra.options {
            cfg.options
                .retain(|x| x.split(':').next() != Some(o.name.as_str()));
            cfg.options.push(if o.value.is_empty() {
                o.name.clone()
            } else {
                format!("{}:{}", o.name, o.value)
            });
        }
    }
    // resolv.conf limits, as the kubelet enforces them.
    cfg.servers.truncate(3);
    cfg.searches.truncate(32);
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{PodDnsConfig, PodDnsConfigOption};

    fn host() -> HostResolv {
        parse_resolv_conf("# comment\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n")
    }

    #[test]
    fn cluster_first_uses_cluster_dns_and_search_list() {
        let spec = PodSpec::default();
        let c = pod_dns(
            &spec,
            "default",
            &["10.96.0.10".into()],
            "cluster.local",
            &host(),
        )
        .unwrap();
        assert_eq!(c.servers, vec!["10.96.0.10"]);
        assert_eq!(
            c.searches,
            vec![
                "default.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example"
            ]
        );
        assert_eq!(c.options, vec!["ndots:5"]);
    }

    #[test]
    fn host_network_falls_back_to_default_unless_with_host_net() {
        let mut spec = PodSpec {
            host_network: true,
            ..Default::default()
        };
        let c = pod_dns(
            &spec,
            "ns",
            &["10.96.0.10".into()],
            "cluster.local",
            &host(),
        )
        .unwrap();
        assert_eq!(c.servers, vec!["192.0.2.53"]);
        spec.dns_policy = "ClusterFirstWithHostNet".into();
        let c = pod_dns(
            &spec,
            "ns",
            &["10.96.0.10".into()],
            "cluster.local",
            &host(),
        )
        .unwrap();
        assert_eq!(c.servers, vec!["10.96.0.10"]);
    }

    #[test]
    fn none_requires_dns_config_and_merges_options() {
        let mut spec = PodSpec {
            dns_policy: "None".into(),
            ..Default::default()
        };
        assert!(pod_dns(&spec, "ns", &[], "cluster.local", &host()).is_err());
        spec.dns_config = Some(PodDnsConfig {
            nameservers: vec!["1.2.3.4".into()],
            searches: vec!["a.example".into()],
            options: vec![PodDnsConfigOption {
                name: "ndots".into(),
                value: "2".into(),
            }],
        });
        let c = pod_dns(&spec, "ns", &[], "cluster.local", &host()).unwrap();
        assert_eq!(c.servers, vec!["1.2.3.4"]);
        assert_eq!(c.searches, vec!["a.example"]);
        assert_eq!(c.options, vec!["ndots:2"]);
    }

    #[test]
    fn unknown_policy_is_named() {
        let spec = PodSpec {
            dns_policy: "Sometimes".into(),
            ..Default::default()
        };
        let e = pod_dns(&spec, "ns", &[], "cluster.local", &host()).unwrap_err();
        assert!(e.contains("Sometimes"), "{e}");
    }
}
