//! fail2ban's firewall settings, for `import-fail2ban`: which syslog2ban backend a `banaction`
//! stands for, and a jail's `port` and `protocol` as per-service bans (`ports`, `protocol`).
//!
//! Pure mapping: the caller reads the configuration and `/etc/services` and writes the TOML.
//! fail2ban's stock banactions (`iptables-multiport`, `nftables-multiport`) ban only the
//! jail's ports, so those are carried over; an `*-allports` action bans every port, which is
//! syslog2ban's default.

use std::collections::HashMap;

/// What a fail2ban `banaction` becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A `[ban] backend` value.
    Maps(&'static str),
    /// Nothing maps; the reason.
    Unmapped(String),
}

/// The backend for a fail2ban `banaction` (its first word: options in `[...]` are dropped).
pub fn backend(banaction: &str) -> Backend {
    let name = banaction
        .split(['[', ' '])
        .next()
        .unwrap_or_default()
        .trim();
    match name {
        n if n.starts_with("nftables") => Backend::Maps("nftables"),
        n if n.starts_with("iptables") => Backend::Maps("ipset"),
        "hostsdeny" => Backend::Maps("hosts-deny"),
        "" => Backend::Unmapped("no banaction".into()),
        other => Backend::Unmapped(format!(
            "\"{other}\" has no syslog2ban backend; the command backend can run its commands (argv, no shell)"
        )),
    }
}

/// Whether a banaction (or a jail's action text) bans every port.
pub fn all_ports(action: &str) -> bool {
    action.contains("allports")
}

/// Port names from an `/etc/services` text: (name or alias, protocol) to number.
#[derive(Debug, Default)]
pub struct Services(HashMap<(String, String), u16>);

impl Services {
    /// Reads `name port/proto alias...` lines; comments and odd lines are skipped.
    pub fn parse(text: &str) -> Self {
        let mut map = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let (Some(name), Some(port)) = (words.next(), words.next()) else {
                continue;
            };
            let Some((number, protocol)) = port.split_once('/') else {
                continue;
            };
            let Ok(number) = number.parse::<u16>() else {
                continue;
            };
            for alias in std::iter::once(name).chain(words) {
                map.insert((alias.to_string(), protocol.to_string()), number);
            }
        }
        Services(map)
    }

    fn lookup(&self, name: &str, protocol: &str) -> Option<u16> {
        self.0
            .get(&(name.to_string(), protocol.to_string()))
            .copied()
    }
}

/// A jail's `port` (names, numbers, `a:b` ranges, comma or space separated) and `protocol`:
/// Ok(None) for every port, Ok(Some((ports, protocol))) for a per-service ban.
pub fn ports(
    port: &str,
    protocol: &str,
    services: &Services,
) -> Result<Option<(Vec<u16>, &'static str)>, String> {
    let protocol = match protocol.trim() {
        "tcp" | "" => "tcp",
        "udp" => "udp",
        "all" => return Ok(None),
        other => return Err(format!("protocol \"{other}\" is not tcp or udp")),
    };
    let mut numbers = Vec::new();
    for item in port.split([',', ' ', '\t', '\n']).filter(|s| !s.is_empty()) {
        if let Some((low, high)) = item.split_once(':') {
            let (Ok(low), Ok(high)) = (low.parse::<u32>(), high.parse::<u32>()) else {
                return Err(format!("\"{item}\" is not a port range"));
            };
            if low <= 1 && high >= 65535 {
                return Ok(None);
            }
            return Err(format!(
                "the range {item} is not supported; list its ports or leave `ports` out to ban every port"
            ));
        }
        let number = match item.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => services.lookup(item, protocol).ok_or_else(|| {
                format!("\"{item}\" is not a port number or a {protocol} service in /etc/services")
            })?,
        };
        if !numbers.contains(&number) {
            numbers.push(number);
        }
    }
    if numbers.is_empty() {
        return Ok(None);
    }
    Ok(Some((numbers, protocol)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICES: &str = "ssh\t\t22/tcp\t\t\t# SSH Remote Login Protocol\n\
                            ftp\t\t21/tcp\nftp-data\t20/tcp\nhttp\t\t80/tcp\t\twww\n\
                            https\t\t443/tcp\nsmtp\t\t25/tcp\t\tmail\ndomain\t\t53/udp\n";

    #[test]
    fn banactions_map_to_backends() {
        assert_eq!(backend("iptables-multiport"), Backend::Maps("ipset"));
        assert_eq!(
            backend("iptables-ipset-proto6[x=y]"),
            Backend::Maps("ipset")
        );
        assert_eq!(backend("nftables-allports"), Backend::Maps("nftables"));
        assert_eq!(backend("hostsdeny"), Backend::Maps("hosts-deny"));
        assert!(matches!(backend("shorewall"), Backend::Unmapped(why) if why.contains("command")));
        assert!(all_ports("iptables-allports") && !all_ports("iptables-multiport"));
    }

    #[test]
    fn ports_resolve_names_numbers_and_the_full_range() {
        let services = Services::parse(SERVICES);
        assert_eq!(ports("ssh", "tcp", &services), Ok(Some((vec![22], "tcp"))));
        assert_eq!(
            ports("ftp,ftp-data, 2121 www", "tcp", &services),
            Ok(Some((vec![21, 20, 2121, 80], "tcp")))
        );
        assert_eq!(
            ports("domain", "udp", &services),
            Ok(Some((vec![53], "udp")))
        );
        assert_eq!(ports("0:65535", "tcp", &services), Ok(None));
        assert_eq!(ports("ssh", "all", &services), Ok(None));
        assert!(ports("1000:2000", "tcp", &services)
            .unwrap_err()
            .contains("range"));
        assert!(ports("gopherx", "tcp", &services)
            .unwrap_err()
            .contains("gopherx"));
        assert!(ports("22", "sctp", &services).is_err());
    }
}
