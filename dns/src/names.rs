//! Where cluster objects live in the DNS tree: `<svc>.<ns>.svc.<domain>`,
//! `_<port>._<proto>.<svc>...`, `a-b-c-d.<ns>.pod.<domain>` and the reverse
//! names `d.c.b.a.in-addr.arpa.` / nibbles under `ip6.arpa.`.
//!
//! Names are built here once per object change and stored in the index;
//! queries never format strings. Every name is lowercase and fully qualified,
//! so index keys compare exactly.

use hickory_proto::rr::domain::Label;
use hickory_proto::rr::{LowerName, Name};
use hickory_proto::ProtoError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The cluster's domain and the fixed names under it.
#[derive(Clone, Debug)]
pub struct ClusterDomain {
    apex: Name,
    svc: Name,
    pod: Name,
}

impl ClusterDomain {
    /// `domain` is e.g. `cluster.local` (a trailing dot is optional).
    pub fn new(domain: &str) -> Result<ClusterDomain, ProtoError> {
        let mut apex = Name::from_ascii(domain.trim_end_matches('.'))?.to_lowercase();
        apex.set_fqdn(true);
        if apex.is_root() {
            return Err(ProtoError::from("the cluster domain must not be the root"));
        }
        Ok(ClusterDomain {
            svc: apex.prepend_label("svc")?,
            pod: apex.prepend_label("pod")?,
            apex,
        })
    }

    /// `cluster.local.`
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// `svc.cluster.local.`
    pub fn services(&self) -> &Name {
        &self.svc
    }

    /// `pod.cluster.local.`
    pub fn pods(&self) -> &Name {
        &self.pod
    }

    /// `<svc>.<ns>.svc.<domain>.`
    pub fn service(&self, namespace: &str, service: &str) -> Result<Name, ProtoError> {
        prepend(&prepend(&self.svc, namespace)?, service)
    }

    /// `<label>.<parent>`: an endpoint's or pod's hostname under its service.
    pub fn child(&self, parent: &Name, label: &str) -> Result<Name, ProtoError> {
        prepend(parent, label)
    }

    /// `_<port>._<proto>.<service name>`.
    pub fn srv(&self, service: &Name, port: &str, protocol: &str) -> Result<Name, ProtoError> {
        let proto = format!("_{}", protocol.to_ascii_lowercase());
        let port = format!("_{}", port.to_ascii_lowercase());
        prepend(&prepend(service, &proto)?, &port)
    }

    /// `a-b-c-d.<ns>.pod.<domain>.` (IPv6: colons become dashes).
    pub fn pod(&self, namespace: &str, ip: IpAddr) -> Result<Name, ProtoError> {
        prepend(&prepend(&self.pod, namespace)?, &dashed(ip))
    }
}

fn prepend(name: &Name, label: &str) -> Result<Name, ProtoError> {
    name.prepend_label(Label::from_ascii(&label.to_ascii_lowercase())?)
}

/// `10.244.1.5` -> `10-244-1-5`; `fd00::1` -> `fd00--1`, as Kubernetes
/// spells addresses inside a label.
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// `in-addr.arpa.`
pub fn in_addr_arpa() -> Name {
    Name::from_labels(["in-addr", "arpa"]).unwrap_or_default()
}

/// `ip6.arpa.`
pub fn ip6_arpa() -> Name {
    Name::from_labels(["ip6", "arpa"]).unwrap_or_default()
}

/// The PTR owner name of an address.
pub fn reverse(ip: IpAddr) -> Name {
    // Labels are digits and hex nibbles, always valid: the builder cannot fail.
    let labels: Vec<String> = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let mut l: Vec<String> = o.iter().rev().map(|b| b.to_string()).collect();
            l.extend(["in-addr".to_string(), "arpa".to_string()]);
            l
        }
        IpAddr::V6(v6) => {
            let mut l: Vec<String> = v6
                .octets()
                .iter()
                .rev()
                .flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)])
                .collect();
            l.extend(["ip6".to_string(), "arpa".to_string()]);
            l
        }
    };
    Name::from_labels(labels.iter().map(String::as_str)).unwrap_or_default()
}

/// The address a complete reverse name stands for (`5.1.244.10.in-addr.arpa.`
/// -> `10.244.1.5`); `None` for partial or malformed names.
pub fn parse_reverse(name: &LowerName) -> Option<IpAddr> {
    let name = Name::from(name.clone());
    let labels: Vec<&[u8]> = name.iter().collect();
    match labels.as_slice() {
        [d, c, b, a, in_addr, arpa] if *in_addr == b"in-addr" && *arpa == b"arpa" => {
            let octet = |l: &[u8]| -> Option<u8> {
                if l.is_empty() || l.len() > 3 || (l.len() > 1 && l[0] == b'0') {
                    return None;
                }
                std::str::from_utf8(l).ok()?.parse().ok()
            };
            Some(IpAddr::V4(Ipv4Addr::new(
                octet(a)?,
                octet(b)?,
                octet(c)?,
                octet(d)?,
            )))
        }
        [nibbles @ .., ip6, arpa] if nibbles.len() == 32 && *ip6 == b"ip6" && *arpa == b"arpa" => {
            let mut bytes = [0u8; 16];
            for (i, pair) in nibbles.chunks(2).enumerate() {
                let low = nibble(pair[0])?;
                let high = nibble(pair[1])?;
                bytes[15 - i] = (high << 4) | low;
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

fn nibble(label: &[u8]) -> Option<u8> {
    match label {
        [c] => (*c as char).to_digit(16).map(|d| d as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower(s: &str) -> LowerName {
        LowerName::from(Name::from_ascii(s).expect("name"))
    }

    #[test]
    fn service_and_pod_names() {
        let d = ClusterDomain::new("Cluster.Local").expect("domain");
        assert_eq!(d.apex().to_string(), "cluster.local.");
        let svc = d.service("default", "Nginx").expect("svc");
        assert_eq!(svc.to_string(), "nginx.default.svc.cluster.local.");
        assert_eq!(
            d.srv(&svc, "http", "TCP").expect("srv").to_string(),
            "_http._tcp.nginx.default.svc.cluster.local."
        );
        assert_eq!(
            d.pod("default", "10.244.1.5".parse().expect("ip"))
                .expect("pod")
                .to_string(),
            "10-244-1-5.default.pod.cluster.local."
        );
        assert_eq!(dashed("fd00::1".parse().expect("ip")), "fd00--1");
        assert!(d.service("default", &"x".repeat(64)).is_err());
    }

    #[test]
    fn reverse_names_round_trip() {
        for ip in [
            "10.96.0.10",
            "0.0.0.0",
            "255.1.2.3",
            "fd00::1",
            "2001:db8::ff",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            let name = reverse(ip);
            assert_eq!(
                parse_reverse(&LowerName::from(name.clone())),
                Some(ip),
                "{name}"
            );
        }
        assert_eq!(
            reverse("10.96.0.10".parse().expect("ip")).to_string(),
            "10.0.96.10.in-addr.arpa."
        );
        for bad in [
            "96.10.in-addr.arpa.",
            "1.300.96.10.in-addr.arpa.",
            "01.0.96.10.in-addr.arpa.",
            "x.0.96.10.in-addr.arpa.",
            "1.2.3.4.5.in-addr.arpa.",
            "1.ip6.arpa.",
            "example.com.",
        ] {
            assert_eq!(parse_reverse(&lower(bad)), None, "{bad}");
        }
    }
}
