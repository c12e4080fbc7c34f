//! What a ban applies to: one address, or a network prefix when a jail counts IPv6 (or IPv4)
//! attackers by prefix. Shown and stored as the bare address for a single host
//! (`203.0.113.9`) and in CIDR form for a prefix (`2001:db8:1:2::/64`).
//!
//! A ban may cover only some ports of its target (a jail's `ports`): a firewall then holds
//! one `Element` per port instead of one for the whole address.
//!
//! A leaf: jails produce targets, and the ban manager, the store, enforcement and control use
//! them; it imports nothing of the project.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A map keyed by attackers' addresses (or keys made of them) on a hot path: a failure's or a
/// ban's way looks its key up several times, and SipHash was 12% of the store thread and a
/// quarter of a failure window's insert. foldhash is several times faster, and seeded per
/// process so that attackers cannot choose addresses that collide.
pub type ByAttacker<K, V> = foldhash::HashMap<K, V>;

/// An address or a prefix, always truncated to its network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target(IpNet);

impl Hash for Target {
    /// Two words whatever the family (equal targets give equal words): the derived hash fed
    /// the hasher the family, the address's bytes with their length and the prefix, a call
    /// each, for every lookup of a ban's several maps.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (bits, prefix) = match self.0 {
            IpNet::V4(net) => (u128::from(u32::from(net.addr())), net.prefix_len()),
            // IPv6 prefix lengths after IPv4's (0..=32): the two families never share a tag.
            IpNet::V6(net) => (u128::from(net.addr()), 33 + net.prefix_len()),
        };
        state.write_u128(bits);
        state.write_u8(prefix);
    }
}

impl Target {
    /// `address` truncated to `prefix` bits (clamped to the family's width).
    pub fn new(address: IpAddr, prefix: u8) -> Self {
        let width = if address.is_ipv4() { 32 } else { 128 };
        let net = IpNet::new(address, prefix.min(width)).unwrap_or_else(|_| IpNet::from(address));
        Target(net.trunc())
    }

    /// A single address.
    pub fn host(address: IpAddr) -> Self {
        Target(IpNet::from(address))
    }

    /// The network.
    pub fn net(&self) -> IpNet {
        self.0
    }

    /// The (network) address.
    pub fn addr(&self) -> IpAddr {
        self.0.addr()
    }

    /// Whether this is one address (a /32 or /128).
    pub fn is_host(&self) -> bool {
        self.0.prefix_len() == self.0.max_prefix_len()
    }

    /// Whether it is IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.0.addr().is_ipv6()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            // A storm writes tens of thousands (log lines, the store, the stream): the dotted
            // quad goes out at once instead of as four formatted numbers.
            IpNet::V4(net) if self.is_host() => {
                let mut text = [0; 15];
                f.write_str(dotted(net.addr(), &mut text))
            }
            _ if self.is_host() => write!(f, "{}", self.0.addr()),
            _ => write!(f, "{}", self.0),
        }
    }
}

/// `address` as `198.51.100.7`, written into `out`.
fn dotted(address: std::net::Ipv4Addr, out: &mut [u8; 15]) -> &str {
    let mut len = 0;
    for (i, octet) in address.octets().into_iter().enumerate() {
        if i > 0 {
            out[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let first = match octet {
            100.. => 0,
            10.. => 1,
            _ => 2,
        };
        for digit in &digits[first..] {
            out[len] = b'0' + digit;
            len += 1;
        }
    }
    // Only ASCII digits and dots were written.
    std::str::from_utf8(&out[..len]).unwrap_or_default()
}

impl FromStr for Target {
    type Err = String;

    /// `203.0.113.9`, `2001:db8::/64` (host bits are dropped).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(address) = text.parse::<IpAddr>() {
            return Ok(Target::host(address));
        }
        text.parse::<IpNet>()
            .map(|net| Target(net.trunc()))
            .map_err(|_| format!("'{text}' is not an IPv4 or IPv6 address (or CIDR prefix)"))
    }
}

impl From<IpAddr> for Target {
    fn from(address: IpAddr) -> Self {
        Target::host(address)
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A transport protocol a per-service ban names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`, as nft and ipset spell it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(format!(
                "\"{other}\" is not a protocol; use \"tcp\" or \"udp\""
            )),
        }
    }
}

/// One port of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port {
    /// Its protocol.
    pub protocol: Protocol,
    /// Its number.
    pub number: u16,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.protocol.as_str(), self.number)
    }
}

/// The ports a ban covers; None where one is used means every port.
pub type Ports = Arc<BTreeSet<Port>>;

/// One thing a firewall holds: all traffic of a target, or one port of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Element {
    /// The address or prefix.
    pub target: Target,
    /// The port, for a per-service ban.
    pub port: Option<Port>,
}

impl Element {
    /// The whole target.
    pub fn all(target: Target) -> Self {
        Element { target, port: None }
    }

    /// The elements of a ban of `target` on `ports` (None: every port).
    pub fn of(target: Target, ports: Option<&Ports>) -> Vec<Element> {
        match ports {
            None => vec![Element::all(target)],
            Some(ports) => ports
                .iter()
                .map(|port| Element {
                    target,
                    port: Some(*port),
                })
                .collect(),
        }
    }
}

impl From<Target> for Element {
    fn from(target: Target) -> Self {
        Element::all(target)
    }
}

impl FromStr for Element {
    type Err = String;

    /// `203.0.113.9` or `203.0.113.9 tcp:2222`, as `Display` writes it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (target, port) = match text.trim().split_once(' ') {
            Some((target, port)) => (target, Some(port)),
            None => (text, None),
        };
        let port = match port {
            None => None,
            Some(port) => {
                let (protocol, number) = port
                    .split_once(':')
                    .ok_or_else(|| format!("'{port}' is not PROTOCOL:PORT"))?;
                Some(Port {
                    protocol: protocol.parse()?,
                    number: number
                        .parse()
                        .map_err(|_| format!("'{number}' is not a port"))?,
                })
            }
        };
        Ok(Element {
            target: target.parse()?,
            port,
        })
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            None => write!(f, "{}", self.target),
            Some(port) => write!(f, "{} {port}", self.target),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `target` feeds a hasher, as bytes.
    fn hashed(target: Target) -> Vec<u8> {
        #[derive(Default)]
        struct Fed(Vec<u8>);
        impl Hasher for Fed {
            fn finish(&self) -> u64 {
                0
            }
            fn write(&mut self, bytes: &[u8]) {
                self.0.extend_from_slice(bytes);
            }
        }
        let mut fed = Fed::default();
        target.hash(&mut fed);
        fed.0
    }

    #[test]
    fn equal_targets_hash_alike_and_families_and_prefixes_apart() {
        let t = |s: &str| s.parse::<Target>().unwrap();
        assert_eq!(hashed(t("198.51.100.7")), hashed(t("198.51.100.7")));
        assert_eq!(hashed(t("2001:db8::/64")), hashed(t("2001:db8::5/64")));
        // The same 128 bits as an IPv4 host, an IPv6 host and IPv6 prefixes.
        let same_bits = [t("0.0.0.1"), t("::1"), t("::1/127"), t("::/0")];
        for (i, a) in same_bits.iter().enumerate() {
            for b in &same_bits[i + 1..] {
                assert_ne!(hashed(*a), hashed(*b), "{a} and {b}");
            }
        }
        assert_ne!(hashed(t("0.0.0.0/0")), hashed(t("::/0")));
    }

    #[test]
    fn hosts_and_prefixes_display_and_parse() {
        let host = Target::new("203.0.113.9".parse().unwrap(), 32);
        assert!(host.is_host());
        assert_eq!(host.to_string(), "203.0.113.9");
        let net = Target::new("2001:db8:1:2:aaaa::5".parse().unwrap(), 64);
        assert!(!net.is_host());
        assert_eq!(net.to_string(), "2001:db8:1:2::/64");
        assert_eq!("2001:db8:1:2::/64".parse::<Target>().unwrap(), net);
        assert_eq!(
            "2001:db8:1:2::77/64".parse::<Target>().unwrap(),
            net,
            "host bits dropped"
        );
        assert_eq!("203.0.113.9".parse::<Target>().unwrap(), host);
        assert!("not-an-ip".parse::<Target>().is_err());
        assert_eq!(
            Target::new("198.51.100.7".parse().unwrap(), 200).to_string(),
            "198.51.100.7"
        );
        assert_eq!(
            serde_json::to_string(&net).unwrap(),
            "\"2001:db8:1:2::/64\""
        );
    }
    #[test]
    fn an_ipv4_host_is_written_as_the_standard_library_writes_it() {
        for octet in 0..=255u8 {
            for address in [
                std::net::Ipv4Addr::new(octet, 0, 0, 0),
                std::net::Ipv4Addr::new(0, octet, 0, 255),
                std::net::Ipv4Addr::new(255, 10, octet, 9),
                std::net::Ipv4Addr::new(1, 100, 99, octet),
            ] {
                let target = Target::host(address.into());
                assert_eq!(target.to_string(), address.to_string());
            }
        }
        let net: Target = "198.51.100.0/24".parse().unwrap();
        assert_eq!(net.to_string(), "198.51.100.0/24");
        let v6: Target = "2001:db8::7".parse().unwrap();
        assert_eq!(v6.to_string(), "2001:db8::7");
    }
}
