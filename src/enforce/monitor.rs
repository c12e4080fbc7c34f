//! Drift detection for the local table: listens to the kernel's nf_tables notifications (what
//! `nft monitor` shows) and reports every transaction that took something of ours away, so
//! the local worker reconciles at once instead of at its next interval.
//!
//! Owns the notification socket (its own thread, blocking reads) and the decoding of the few
//! messages that matter. It reports only what happened; whether an address that left a set is
//! still wanted there is the worker's question (our own unbans remove addresses too). A
//! transaction is judged by its net effect: a ban's add, delete, add of one element is no loss.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{
    bind, getsockname, recvfrom, send, socket_with, sockopt, AddressFamily, RecvFlags, SendFlags,
    SocketFlags, SocketType,
};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::netlink::{self as nl, align, attribute, attributes};
use super::nft::{SET_NET4, SET_NET6, SET_PORT4, SET_PORT6, SET_V4, SET_V6};
use super::unheard::{Generations, Marker, Quiet, GROUPS};

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFPROTO_INET: u8 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
/// Ends a transaction's notifications; also the answer to `GETGEN`.
const NFT_MSG_NEWGEN: u16 = 15;
/// `destroy` (Linux 6.3+): a delete that ignores missing objects.
const NFT_MSG_DESTROYTABLE: u16 = 26;
const NFT_MSG_DESTROYSETELEM: u16 = 30;
/// Attribute 1 is the table name in table, chain, rule, set and element-list messages.
const ATTR_TABLE: u16 = 1;
/// Attribute 2 is the set name in set and element-list messages.
const ATTR_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
/// Events the kernel may queue before it drops some (ENOBUFS): a ban storm's own batches
/// are notified too.
const RECV_BUFFER: usize = 8 * 1024 * 1024;
/// How often the thread checks whether its worker is gone.
const POLL: Duration = Duration::from_secs(1);

/// What one transaction (or a gap in the notifications) took from our table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The table, a set, the chain or a rule was deleted, an interval set lost elements, or
    /// notifications were lost: reconcile whatever the worker wants.
    pub structural: bool,
    /// Addresses that left `banned4` / `banned6` and were not put back in the same
    /// transaction.
    pub removed: Vec<IpAddr>,
    /// A batch of ours applied unheard was judged unsound: another transaction may have
    /// gone unheard meanwhile, or a marker was lost (structural too).
    pub unheard: bool,
}

/// Starts the listening thread; drifts arrive on the returned queue until it is dropped. The
/// [`Quiet`] lets the worker apply a storm's batch unheard (see [`super::unheard`]).
/// An error: notifications cannot be had (the periodic reconcile still runs).
pub fn start(table: &str) -> std::io::Result<(mpsc::Receiver<Drift>, Quiet)> {
    let socket = Arc::new(subscribe()?);
    let portid = SocketAddrNetlink::try_from(getsockname(&*socket)?)
        .map_err(std::io::Error::from)?
        .pid();
    // The generation now, so that the first window has something to count from.
    send(&*socket, &nl::getgen_request(1, 0), SendFlags::empty())?;
    let (tx, rx) = mpsc::channel(64);
    let table = table.to_string();
    let listening = socket.clone();
    std::thread::Builder::new()
        .name("nft-monitor".into())
        .spawn(move || {
            // Started from the favoured firewall stage; drift can wait for ingest.
            crate::supervise::unfavour_this_thread();
            listen(&listening, &table, &tx)
        })?;
    Ok((rx, Quiet::new(socket, portid)))
}

fn subscribe() -> std::io::Result<OwnedFd> {
    let socket = socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(netlink::NETFILTER),
    )?;
    bind(&socket, &SocketAddrNetlink::new(0, GROUPS))?;
    // Best effort: the default buffer also works, it only overflows sooner.
    let _ = sockopt::set_socket_recv_buffer_size(&socket, RECV_BUFFER);
    sockopt::set_socket_timeout(&socket, sockopt::Timeout::Recv, Some(POLL))?;
    Ok(socket)
}

fn listen(socket: &OwnedFd, table: &str, tx: &mpsc::Sender<Drift>) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut transaction = Transaction::default();
    let mut generations = Generations::default();
    let unheard = || Drift {
        structural: true,
        removed: Vec::new(),
        unheard: true,
    };
    loop {
        if tx.is_closed() {
            return;
        }
        let mut drift = Vec::new();
        match recvfrom(socket, &mut buf[..], RecvFlags::empty()) {
            Ok((n, _, from)) => {
                let datagram = buf.get(..n).unwrap_or_default();
                let sender = from
                    .and_then(|a| SocketAddrNetlink::try_from(a).ok())
                    .map_or(0, |a| a.pid());
                if sender != 0 {
                    // From user space: only the worker's markers mean anything.
                    let marker = Marker::decode(datagram);
                    if marker.is_some_and(|m| generations.marker(m, std::time::Instant::now())) {
                        debug!("Another transaction may have gone unheard while a batch of ours was applied; reconciling");
                        drift.push(unheard());
                    }
                } else {
                    drift = transaction.feed(datagram, table);
                    generation_ids(datagram).for_each(|id| generations.heard(id));
                }
            }
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => {}
            Err(e) if e == rustix::io::Errno::NOBUFS => {
                // Notifications were lost: anything may have happened.
                debug!("nftables notifications overflowed; reconciling");
                transaction = Transaction::default();
                generations.lost();
                drift.push(unheard());
            }
            Err(e) => {
                warn!(error = %e, "nftables notifications stopped; the periodic reconcile goes on");
                return;
            }
        }
        // Checked on every turn: a busy table's notifications never let the read time out.
        if generations.expired(std::time::Instant::now()) {
            drift.push(unheard());
        }
        for drift in drift {
            if tx.blocking_send(drift).is_err() {
                return;
            }
        }
    }
}

/// The generation ids of the transactions whose end a datagram holds (`NEWGEN`).
fn generation_ids(mut datagram: &[u8]) -> impl Iterator<Item = u32> + '_ {
    std::iter::from_fn(move || loop {
        let (message, rest) = next_message(datagram)?;
        datagram = rest;
        if let Some((NFT_MSG_NEWGEN, _, attributes)) = message {
            if let Some(id) = nl::generation_attribute(attributes) {
                return Some(id);
            }
        }
    })
}

/// The notifications of the transaction in progress.
#[derive(Debug, Default)]
struct Transaction {
    structural: bool,
    /// Whether each touched address is in its set after the messages so far: the last
    /// message about an address decides.
    present: HashMap<IpAddr, bool>,
}

impl Transaction {
    /// Reads one datagram of notifications; returns a drift for each transaction it ended
    /// that took something of ours.
    fn feed(&mut self, mut datagram: &[u8], table: &str) -> Vec<Drift> {
        let mut drifts = Vec::new();
        while let Some((message, rest)) = next_message(datagram) {
            datagram = rest;
            let Some((kind, family, attributes)) = message else {
                continue;
            };
            if kind == NFT_MSG_NEWGEN {
                drifts.extend(self.end());
                continue;
            }
            if family != NFPROTO_INET || string_attribute(attributes, ATTR_TABLE) != Some(table) {
                continue;
            }
            match kind {
                NFT_MSG_DELTABLE
                | NFT_MSG_DELCHAIN
                | NFT_MSG_DELRULE
                | NFT_MSG_DELSET
                | NFT_MSG_DESTROYTABLE..NFT_MSG_DESTROYSETELEM => self.structural = true,
                NFT_MSG_NEWSETELEM | NFT_MSG_DELSETELEM | NFT_MSG_DESTROYSETELEM => {
                    let set = string_attribute(attributes, ATTR_SET);
                    let added = kind == NFT_MSG_NEWSETELEM;
                    match set {
                        Some(SET_V4 | SET_V6) => {
                            let keys = element_keys(attributes);
                            if keys.is_empty() && !added {
                                // A flush may come as one message without elements.
                                self.structural = true;
                            }
                            for key in keys {
                                self.present.insert(key, added);
                            }
                        }
                        // Prefix and per-port bans are few: any removal there is checked in full.
                        Some(SET_NET4 | SET_NET6 | SET_PORT4 | SET_PORT6) if !added => {
                            self.structural = true
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        drifts
    }

    /// The transaction's net loss, if any; starts the next one.
    fn end(&mut self) -> Option<Drift> {
        let done = std::mem::take(self);
        let removed: Vec<IpAddr> = done
            .present
            .into_iter()
            .filter_map(|(address, present)| (!present).then_some(address))
            .collect();
        (done.structural || !removed.is_empty()).then_some(Drift {
            structural: done.structural,
            removed,
            unheard: false,
        })
    }
}

/// Message type, family and attributes of the first nf_tables message of `datagram`, and
/// the rest. `Some(None)` for a message of another subsystem; None at the end or when the
/// lengths are garbled (the rest of the datagram is then skipped).
#[allow(clippy::type_complexity)]
fn next_message(datagram: &[u8]) -> Option<(Option<(u16, u8, &[u8])>, &[u8])> {
    let header = datagram.get(..NLMSG_HDRLEN)?;
    let length = u32::from_ne_bytes(header.get(0..4)?.try_into().ok()?) as usize;
    let kind = u16::from_ne_bytes(header.get(4..6)?.try_into().ok()?);
    if length < NLMSG_HDRLEN || length > datagram.len() {
        return None;
    }
    let message = datagram.get(NLMSG_HDRLEN..length)?;
    let rest = datagram.get(align(length).min(datagram.len())..)?;
    if kind >> 8 != NFNL_SUBSYS_NFTABLES {
        return Some((None, rest));
    }
    let family = *message.first()?;
    let attributes = message.get(NFGENMSG_LEN..).unwrap_or_default();
    Some((Some((kind & 0xff, family, attributes)), rest))
}

fn string_attribute(block: &[u8], kind: u16) -> Option<&str> {
    let value = attribute(block, kind)?;
    let value = value.strip_suffix(&[0]).unwrap_or(value);
    std::str::from_utf8(value).ok()
}

/// The addresses of an element list (4 or 16 byte keys).
fn element_keys(block: &[u8]) -> Vec<IpAddr> {
    let Some(list) = attribute(block, NFTA_SET_ELEM_LIST_ELEMENTS) else {
        return Vec::new();
    };
    attributes(list)
        .filter(|(kind, _)| *kind == NFTA_LIST_ELEM)
        .filter_map(|(_, element)| attribute(element, NFTA_SET_ELEM_KEY))
        .filter_map(|key| attribute(key, NFTA_DATA_VALUE))
        .filter_map(|value| match value.len() {
            4 => <[u8; 4]>::try_from(value).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(value).ok().map(IpAddr::from),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::netlink;
    use super::super::nft::ElementChange;
    use super::*;
    use crate::target::Target;

    fn t(s: &str) -> Target {
        s.parse().unwrap()
    }

    /// A notification as the kernel sends it: header, nfgenmsg, the given attributes.
    fn message(kind: u16, family: u8, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![family, 0, 0, 0];
        for (k, v) in attributes {
            body.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&k.to_ne_bytes());
            body.extend_from_slice(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | kind).to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(&body);
        out
    }

    fn new_gen() -> Vec<u8> {
        message(NFT_MSG_NEWGEN, 0, &[(1, &7u32.to_be_bytes())])
    }

    /// The element messages of the transaction the worker itself sends for `changes`.
    fn our_batch(table: &str, changes: &[ElementChange]) -> Vec<u8> {
        netlink::encode(table, changes, 1).unwrap().bytes().to_vec()
    }

    #[test]
    fn a_ban_or_an_unban_of_our_own_loses_nothing_it_did_not_mean_to() {
        let mut tx = Transaction::default();
        let ban = ElementChange::Add(t("198.51.100.66").into(), Some(Duration::from_secs(60)));
        let mut datagram = our_batch("syslog2ban", &[ban]);
        datagram.extend(new_gen());
        assert_eq!(tx.feed(&datagram, "syslog2ban"), vec![]);
        // An unban takes the address out: reported, the worker knows it is not wanted.
        let mut datagram = our_batch(
            "syslog2ban",
            &[ElementChange::Remove(t("2001:db8::1").into())],
        );
        datagram.extend(new_gen());
        let drifts = tx.feed(&datagram, "syslog2ban");
        assert_eq!(
            drifts,
            vec![Drift {
                structural: false,
                removed: vec!["2001:db8::1".parse().unwrap()],
                unheard: false,
            }]
        );
    }

    #[test]
    fn deleting_our_table_set_chain_or_rules_is_structural_and_other_tables_are_ignored() {
        for kind in [
            NFT_MSG_DELTABLE,
            NFT_MSG_DELCHAIN,
            NFT_MSG_DELRULE,
            NFT_MSG_DELSET,
            NFT_MSG_DESTROYTABLE,
        ] {
            let mut tx = Transaction::default();
            let mut datagram = message(kind, NFPROTO_INET, &[(ATTR_TABLE, b"syslog2ban\0")]);
            datagram.extend(message(kind, NFPROTO_INET, &[(ATTR_TABLE, b"other\0")]));
            datagram.extend(new_gen());
            let drifts = tx.feed(&datagram, "syslog2ban");
            assert!(drifts.len() == 1 && drifts[0].structural, "kind {kind}");
            let mut other = message(kind, NFPROTO_INET, &[(ATTR_TABLE, b"other\0")]);
            other.extend(new_gen());
            assert!(tx.feed(&other, "syslog2ban").is_empty(), "kind {kind}");
        }
    }

    #[test]
    fn a_flush_without_elements_and_interval_removals_are_structural() {
        let mut tx = Transaction::default();
        let mut flush = message(
            NFT_MSG_DELSETELEM,
            NFPROTO_INET,
            &[(ATTR_TABLE, b"syslog2ban\0"), (ATTR_SET, b"banned4\0")],
        );
        flush.extend(new_gen());
        assert!(tx.feed(&flush, "syslog2ban")[0].structural);
        let mut prefix = Vec::new();
        prefix.extend(message(
            NFT_MSG_DELSETELEM,
            NFPROTO_INET,
            &[(ATTR_TABLE, b"syslog2ban\0"), (ATTR_SET, b"banned6net\0")],
        ));
        prefix.extend(new_gen());
        assert!(tx.feed(&prefix, "syslog2ban")[0].structural);
    }

    #[test]
    fn transactions_split_across_datagrams_and_garbage_never_panics() {
        let mut tx = Transaction::default();
        let change = ElementChange::Remove(t("198.51.100.7").into());
        let batch = our_batch("syslog2ban", &[change]);
        let (first, second) = batch.split_at(batch.len() / 2);
        // Half a message is skipped; the transaction still ends cleanly.
        let _ = tx.feed(first, "syslog2ban");
        let _ = tx.feed(second, "syslog2ban");
        let _ = tx.feed(&new_gen(), "syslog2ban");
        for n in 0..batch.len() {
            let _ = tx.feed(&batch[..n], "syslog2ban");
            let mut bytes = batch.clone();
            bytes[n] ^= 0xff;
            let _ = tx.feed(&bytes, "syslog2ban");
        }
    }
}
