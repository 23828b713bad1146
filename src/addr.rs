//! One address type for every Redis node and sentinel: what the config lists,
//! what Sentinel prints in events and replies, what alerts show and what the
//! decision core keys its maps by. Pure: no I/O (resolving host names is
//! `act::resolve`'s job).
//!
//! An address is compared the way Sentinel compares them: an IP address has
//! one canonical form (`0:0::1` is `::1`, `::FFFF:…` stays as written by
//! [`std::net::Ipv6Addr`]'s display), a host name is case-insensitive
//! (`strcasecmp` in `sentinel.c`). Both are normalised when the address is
//! made, so the derived `Eq`, `Ord` and `Hash` are the comparison.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;

/// A Redis node's or sentinel's address: an IP address (v4 or v6) or a host
/// name (`announce-hostnames yes`), and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Addr {
    /// Canonical: an IP address as [`IpAddr`] displays it, or a lower-case
    /// host name. Read it; make addresses with [`Addr::new`] or `parse`.
    pub host: String,
    pub port: u16,
}

impl Addr {
    /// The address of `host` (IP address or host name, IPv6 without brackets,
    /// as Sentinel prints it: `::1 6379`) and `port`, normalised.
    pub fn new(host: impl AsRef<str>, port: u16) -> Addr {
        Addr {
            host: canonical_host(host.as_ref()),
            port,
        }
    }

    /// The IP address, when the host is one (not a host name).
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// Whether the host is a name that needs resolving.
    pub fn is_name(&self) -> bool {
        self.ip().is_none()
    }
}

/// `host` in its one canonical form: IP addresses re-printed, names in lower
/// case (a trailing dot, the DNS root, removed).
pub fn canonical_host(host: &str) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => bare.trim_end_matches('.').to_ascii_lowercase(),
    }
}

impl FromStr for Addr {
    type Err = String;
    /// `host:port`, `[v6]:port` (the config's spelling).
    fn from_str(s: &str) -> Result<Addr, String> {
        let bad = |why: &str| {
            format!(
                "address {s:?} {why} (host:port, e.g. 10.0.1.11:26379, redis-a.internal:26379 or [fd00::11]:26379)"
            )
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest
                .split_once(']')
                .ok_or_else(|| bad("has '[' without ']'"))?;
            let p = p
                .strip_prefix(':')
                .ok_or_else(|| bad("needs :port after the bracketed IPv6 address"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad(
                    "has brackets around something that is not an IPv6 address",
                ));
            }
            (h, p)
        } else {
            let (h, p) = s.rsplit_once(':').ok_or_else(|| bad("must be host:port"))?;
            if h.contains(':') {
                return Err(bad(
                    "is an IPv6 address without brackets; write [addr]:port",
                ));
            }
            (h, p)
        };
        let port: u16 = port
            .parse()
            .map_err(|_| bad(&format!("has port {port:?}, not a number from 1 to 65535")))?;
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        if port == 0 {
            return Err(bad("has port 0"));
        }
        if host.parse::<IpAddr>().is_err() && !is_host_name(host) {
            return Err(bad(
                "has a host that is neither an IP address nor a host name",
            ));
        }
        Ok(Addr::new(host, port))
    }
}

impl TryFrom<String> for Addr {
    type Error = String;
    fn try_from(s: String) -> Result<Addr, String> {
        s.parse()
    }
}

/// Letters, digits, `-`, `_` and dots (RFC 1123, with `_` as resolvers allow),
/// and not all-numeric in its last label (RFC 3696 §2): `10.0.1` is a typo of
/// an IP address, which `getaddrinfo` would read as another address.
fn is_host_name(s: &str) -> bool {
    let last = s.trim_end_matches('.').rsplit('.').next().unwrap_or("");
    !last.bytes().all(|b| b.is_ascii_digit())
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl fmt::Display for Addr {
    /// `host:port`, `[v6]:port`: the form the config accepts back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_however_it_is_spelled() {
        let a: Addr = "[::1]:26379".parse().unwrap();
        assert_eq!(a, Addr::new("::1", 26379));
        assert_eq!(a, Addr::new("0:0:0::1", 26379));
        assert_eq!(a, "[0000::0001]:26379".parse().unwrap());
        assert_eq!(a.to_string(), "[::1]:26379");
        assert_eq!(a.ip(), Some("::1".parse().unwrap()));
        let n: Addr = "Redis-A.Internal.:6379".parse().unwrap();
        assert_eq!(n, Addr::new("redis-a.internal", 6379));
        assert_eq!(n.to_string(), "redis-a.internal:6379");
        assert!(n.is_name());
        assert_eq!(Addr::new("FD00::A", 1), Addr::new("fd00::a", 1));
        assert_ne!(Addr::new("10.0.0.1", 1), Addr::new("10.0.0.1", 2));
    }

    #[test]
    fn display_parses_back() {
        for s in ["10.0.1.11:26379", "[fd00::11]:26379", "localhost:6379"] {
            let a: Addr = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
            assert_eq!(a.to_string().parse::<Addr>().unwrap(), a);
        }
    }

    #[test]
    fn bad_addresses_say_why() {
        for (s, why) in [
            ("10.0.1.11", "host:port"),
            ("::1:26379", "without brackets"),
            ("[::1]26379", ":port"),
            ("[10.0.0.1]:1", "not an IPv6"),
            ("10.0.0.1:0", "port 0"),
            ("10.0.0.1:x", "not a number"),
            (":1", "no host"),
            ("a b:1", "neither"),
            ("10.0.1:26379", "neither"),
            ("10.0.1.011:26379", "neither"),
        ] {
            let e = s.parse::<Addr>().expect_err(s);
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
