//! The host's `/etc/resolv.conf`, read for its `nameserver` lines: the
//! default upstreams for names outside the zone.

use std::net::{IpAddr, SocketAddr};

/// Nameserver addresses (port 53) in file order. Malformed lines and IPv6
/// zone suffixes (`%eth0`) are skipped or dropped.
pub fn nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            let addr = words.next()?;
            let addr = addr.split('%').next().unwrap_or(addr);
            addr.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

/// Parses `--upstream` values: `IP`, `IP:PORT` or `[IPv6]:PORT`.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{s:?} is not IP, IP:PORT or [IPv6]:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers_only() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\n\
                    nameserver fe80::1%eth0 # link-local\nnameserver bogus\n  nameserver 1.1.1.1\n\
                    options ndots:5\n";
        let got: Vec<String> = nameservers(text).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["10.0.0.2:53", "[fe80::1]:53", "1.1.1.1:53"]);
    }

    #[test]
    fn upstream_flags() {
        assert_eq!(
            parse_upstream("127.0.0.1:5353").map(|a| a.to_string()),
            Ok("127.0.0.1:5353".to_string())
        );
        assert_eq!(
            parse_upstream("::1").map(|a| a.to_string()),
            Ok("[::1]:53".to_string())
        );
        assert!(parse_upstream("localhost:53").is_err());
    }
}
