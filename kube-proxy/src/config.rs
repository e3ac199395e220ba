//! What the proxy was told on its command line, in the shapes the rest of
//! the crate uses: the default balancing policy, the timings of the retry
//! and drain rules, where NodePorts listen, and how bytes are copied.

use ipnet::Ipv4Net;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

/// The Service annotation that overrides `--policy` for one Service.
pub const POLICY_ANNOTATION: &str = "rkube.io/lb-policy";

/// How a new connection chooses among a port's ready endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// The endpoint with the fewest open connections through this proxy,
    /// ties taken in turn.
    LeastConn,
}

impl FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Policy, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "round-robin" | "roundrobin" | "rr" => Ok(Policy::RoundRobin),
            "least-conn" | "least-connections" | "leastconn" | "lc" => Ok(Policy::LeastConn),
            other => Err(format!(
                "unknown load-balancing policy {other:?} (expected \"round-robin\" or \"least-conn\")"
            )),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::RoundRobin => "round-robin",
            Policy::LeastConn => "least-conn",
        })
    }
}

/// How TCP bytes move between the two sockets of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyMode {
    /// splice(2) through a pipe when the kernel supports it, else `Copy`.
    Auto,
    /// splice(2) only (fails at start when unavailable).
    Splice,
    /// `tokio::io::copy_bidirectional` through user-space buffers.
    Copy,
}

impl FromStr for CopyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<CopyMode, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(CopyMode::Auto),
            "splice" => Ok(CopyMode::Splice),
            "copy" => Ok(CopyMode::Copy),
            other => Err(format!(
                "unknown copy mode {other:?} (expected \"auto\", \"splice\" or \"copy\")"
            )),
        }
    }
}

/// Everything the data path and the sync loop need to know.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The policy of Services without the policy annotation.
    pub default_policy: Policy,
    /// How long connections to an endpoint that left its Service may go on.
    pub endpoint_close_grace: Duration,
    /// How long a connect to an endpoint may take before the next is tried.
    pub connect_timeout: Duration,
    /// How long a UDP client may stay silent before its session ends.
    pub udp_idle_timeout: Duration,
    /// Where NodePorts listen (`0.0.0.0`: every address of the node).
    pub nodeport_addresses: Vec<IpAddr>,
    /// ClusterIPs outside this range are never put on the interface.
    pub service_cidr: Ipv4Net,
    /// Resolved at start: `Splice` or `Copy`, never `Auto`.
    pub copy_mode: CopyMode,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            default_policy: Policy::RoundRobin,
            endpoint_close_grace: Duration::from_secs(5),
            connect_timeout: Duration::from_millis(1000),
            udp_idle_timeout: Duration::from_secs(30),
            nodeport_addresses: vec![IpAddr::from([0, 0, 0, 0])],
            service_cidr: default_service_cidr(),
            copy_mode: CopyMode::Copy,
        }
    }
}

/// The cluster's service CIDR (DESIGN.md, "Addresses").
pub fn default_service_cidr() -> Ipv4Net {
    Ipv4Net::new([10, 96, 0, 0].into(), 12).unwrap_or_default()
}

/// Parses a duration written as seconds (`5`, `0.5`) or with a unit
/// (`250ms`, `5s`, `1m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (examples: 5, 5s, 250ms, 1m)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!(
            "invalid duration {s:?}: must be a non-negative number"
        ));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_by_their_common_names() {
        assert_eq!("least-conn".parse(), Ok(Policy::LeastConn));
        assert_eq!("Round-Robin".parse(), Ok(Policy::RoundRobin));
        assert!("random".parse::<Policy>().is_err());
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn service_cidr_is_the_design_one() {
        assert_eq!(default_service_cidr().to_string(), "10.96.0.0/12");
    }
}
