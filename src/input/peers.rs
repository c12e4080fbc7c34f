//! Connection slots per peer: how many connections one host holds on a listener, so that
//! idle or hostile connections from one host never lock the others out.
//!
//! Owns the peer key (an IPv4 address, or an IPv6 /64: one host usually holds a whole /64)
//! and the count. Used by every stream listener and by the metrics endpoint; it reads no
//! bytes and knows nothing of protocols.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Whose slots a connection takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PeerKey {
    V4(u32),
    V6Net64(u64),
}

impl From<IpAddr> for PeerKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => PeerKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => PeerKey::V4(u32::from(v4)),
                None => PeerKey::V6Net64((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Open connections per peer, at most `per_peer` each.
#[derive(Debug, Clone)]
pub struct PeerTable {
    per_peer: usize,
    /// Entries are removed at zero, so the table holds only peers with open connections.
    open: Arc<Mutex<HashMap<PeerKey, usize>>>,
}

/// One of a peer's slots; freed when dropped.
#[derive(Debug)]
pub struct PeerSlot {
    open: Arc<Mutex<HashMap<PeerKey, usize>>>,
    peer: PeerKey,
}

impl PeerTable {
    /// A table allowing `per_peer` connections per peer.
    pub fn new(per_peer: usize) -> Self {
        PeerTable {
            per_peer,
            open: Arc::default(),
        }
    }

    /// A slot for a connection from `ip`; None when its peer holds `per_peer` already.
    pub fn take(&self, ip: IpAddr) -> Option<PeerSlot> {
        let peer = PeerKey::from(ip);
        // Only a counter update happens under the lock; nothing awaits while it is held.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(peer).or_insert(0);
        if *count >= self.per_peer {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            open: self.open.clone(),
            peer,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_peer_holds_at_most_its_share_and_gets_it_back_on_close() {
        let table = PeerTable::new(2);
        let a = table.take(ip("198.51.100.1")).unwrap();
        let _b = table.take(ip("198.51.100.1")).unwrap();
        assert!(table.take(ip("198.51.100.1")).is_none());
        // The same host as an IPv4-mapped IPv6 address shares the count.
        assert!(table.take(ip("::ffff:198.51.100.1")).is_none());
        assert!(table.take(ip("198.51.100.2")).is_some());
        drop(a);
        assert!(table.take(ip("198.51.100.1")).is_some());
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_their_slots() {
        let table = PeerTable::new(1);
        let _held = table.take(ip("2001:db8:1:2::1")).unwrap();
        assert!(table.take(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(table.take(ip("2001:db8:1:3::1")).is_some());
    }

    #[test]
    fn the_table_forgets_peers_without_connections() {
        let table = PeerTable::new(1);
        for i in 0..=255u8 {
            drop(table.take(IpAddr::from([198, 51, 100, i])));
        }
        assert!(table.open.lock().unwrap().is_empty());
    }
}
