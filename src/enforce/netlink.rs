//! Element batches for the local nftables sets, sent straight to the kernel over a netfilter
//! netlink socket: the fast path for single addresses.
//!
//! Owns the binary encoding of one nf_tables transaction (batch begin, `NEWSETELEM` /
//! `DELSETELEM` messages, batch end) and reading the kernel's acknowledgements. The kernel
//! applies the batch inside the `send` call and queues one ack per message before it returns,
//! so a batch costs two system calls and no process. A batch of additions is first sent as
//! exclusive adds (one insert per element); only if an element is there already is it sent
//! again in the replacing shape. Prefix bans (interval sets, where nft
//! merges ranges) and very large batches are not encoded here: [`encode`] declines them and
//! the caller uses nft. Tables, sets and rules are created by nft, never here. Knows nothing
//! about bans; addresses are typed [`Target`]s, so no log text reaches the kernel. Also reads
//! the ruleset's generation (`GETGEN`) and sends the drift monitor its markers (see
//! [`super::unheard`]).

use std::io::Read as _;
use std::net::IpAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

use super::nft::{ElementChange, SET_V4, SET_V6};
use crate::target::Target;

/// Batches with more changes than this go to nft (a restore of many bans): one datagram must
/// fit the socket's default send buffer (~208 KiB), and a process start is noise next to it.
pub const MAX_CHANGES: usize = 1000;
/// Elements per message: the element list is one attribute, whose length is 16 bits.
const ELEMENTS_PER_MESSAGE: usize = 500;
/// The kernel answers within the `send`; this only guards against a wedged socket.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

const AF_NETLINK: i32 = 16;
const NETLINK_NETFILTER: i32 = 12;
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
const NFPROTO_INET: u8 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_DATA_VALUE: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Why a netlink batch was not applied.
#[derive(Debug, Error)]
pub enum NetlinkError {
    /// The socket could not be opened, or sending or receiving failed.
    #[error("netlink socket: {0}")]
    Socket(#[from] std::io::Error),
    /// The kernel refused a message (the whole batch was rolled back).
    #[error("the kernel refused the batch: {0}")]
    Refused(std::io::Error),
    /// The kernel's answer was not what netlink promises.
    #[error("unexpected netlink answer: {0}")]
    Garbled(&'static str),
}

/// One encoded transaction.
#[derive(Debug)]
pub struct Batch {
    bytes: Vec<u8>,
    /// Sequence numbers of the messages that ask for an ack (the element messages, which
    /// follow one another): `first..first + acks`.
    first: u32,
    acks: u32,
}

/// Encodes `changes` for table `table` (family inet) as one transaction with the same shape as
/// `nft::batch_script`: per set, every touched element is added (so the delete cannot fail on a
/// missing one), deleted, and the additions added again with their exact timeout. None when
/// the batch has a prefix, a per-port element or more than [`MAX_CHANGES`] changes (nft's job).
pub fn encode(table: &str, changes: &[ElementChange], first_seq: u32) -> Option<Batch> {
    encode_as(table, changes, first_seq, Shape::Replace)
}

/// Encodes a batch of additions only as one exclusive add per set: the kernel refuses the
/// whole transaction (EEXIST) if any element is already there, so a storm's new bans cost one
/// insert each instead of three, and an element that is there (a renewal) is never left with
/// its old timeout. None when a change is a removal, or as [`encode`].
pub fn encode_new(table: &str, changes: &[ElementChange], first_seq: u32) -> Option<Batch> {
    if changes
        .iter()
        .any(|c| matches!(c, ElementChange::Remove(_)))
    {
        return None;
    }
    encode_as(table, changes, first_seq, Shape::Exclusive)
}

/// How a transaction sets its elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Touch, delete, add: exact timeouts whatever the set held.
    Replace,
    /// One add that fails if an element exists.
    Exclusive,
}

fn encode_as(
    table: &str,
    changes: &[ElementChange],
    first_seq: u32,
    shape: Shape,
) -> Option<Batch> {
    if changes.is_empty() || changes.len() > MAX_CHANGES {
        return None;
    }
    if changes
        .iter()
        .any(|c| !target(c).is_host() || c.element().port.is_some())
    {
        return None;
    }
    let mut out = Encoder::new(first_seq);
    out.control(NFNL_MSG_BATCH_BEGIN);
    for (set, v6) in [(SET_V4, false), (SET_V6, true)] {
        let mine: Vec<&ElementChange> = changes
            .iter()
            .filter(|c| target(c).is_ipv6() == v6)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let touch: Vec<(IpAddr, Option<Duration>)> = mine
            .iter()
            .map(|c| match c {
                ElementChange::Add(a, timeout) => (a.target.addr(), *timeout),
                ElementChange::Remove(a) => (a.target.addr(), Some(Duration::from_secs(1))),
            })
            .collect();
        let all: Vec<(IpAddr, Option<Duration>)> =
            mine.iter().map(|c| (target(c).addr(), None)).collect();
        let adds: Vec<(IpAddr, Option<Duration>)> = mine
            .iter()
            .filter_map(|c| match c {
                ElementChange::Add(a, timeout) => Some((a.target.addr(), *timeout)),
                ElementChange::Remove(_) => None,
            })
            .collect();
        if shape == Shape::Exclusive {
            out.elements(
                NFT_MSG_NEWSETELEM,
                NLM_F_CREATE | NLM_F_EXCL,
                table,
                set,
                &adds,
            );
            continue;
        }
        out.elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE, table, set, &touch);
        out.elements(NFT_MSG_DELSETELEM, 0, table, set, &all);
        out.elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE, table, set, &adds);
    }
    out.control(NFNL_MSG_BATCH_END);
    Some(out.finish())
}

impl Batch {
    /// The encoded messages.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn target(change: &ElementChange) -> &Target {
    &change.element().target
}

struct Encoder {
    bytes: Vec<u8>,
    seq: u32,
    first: u32,
    acks: u32,
}

impl Encoder {
    fn new(first_seq: u32) -> Self {
        Encoder {
            bytes: Vec::with_capacity(4096),
            seq: first_seq,
            first: 0,
            acks: 0,
        }
    }

    /// Batch begin or end: no ack asked (older kernels never send one for these).
    fn control(&mut self, kind: u16) {
        let start = self.header(kind, NLM_F_REQUEST, 0);
        // res_id: the subsystem the batch is for, big-endian.
        self.bytes[start + NLMSG_HDRLEN + 2..start + NLMSG_HDRLEN + 4]
            .copy_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
        self.close_message(start);
    }

    /// One element message per chunk of `elements`, with `flags` besides request and ack.
    fn elements(
        &mut self,
        kind: u16,
        flags: u16,
        table: &str,
        set: &str,
        elements: &[(IpAddr, Option<Duration>)],
    ) {
        for chunk in elements.chunks(ELEMENTS_PER_MESSAGE) {
            let flags = NLM_F_REQUEST | NLM_F_ACK | flags;
            let start = self.header((NFNL_SUBSYS_NFTABLES << 8) | kind, flags, NFPROTO_INET);
            if self.acks == 0 {
                self.first = self.seq;
            }
            self.acks += 1;
            self.string(NFTA_SET_ELEM_LIST_TABLE, table);
            self.string(NFTA_SET_ELEM_LIST_SET, set);
            let list = self.open(NFTA_SET_ELEM_LIST_ELEMENTS);
            for (address, timeout) in chunk {
                let element = self.open(NFTA_LIST_ELEM);
                let key = self.open(NFTA_SET_ELEM_KEY);
                match address {
                    IpAddr::V4(a) => self.attribute(NFTA_DATA_VALUE, &[&a.octets()]),
                    IpAddr::V6(a) => self.attribute(NFTA_DATA_VALUE, &[&a.octets()]),
                }
                self.close(key);
                if let Some(timeout) = timeout {
                    // Milliseconds, rounded up so the kernel never frees an address early.
                    let ms = (timeout.as_nanos().div_ceil(1_000_000) as u64).max(1);
                    self.attribute(NFTA_SET_ELEM_TIMEOUT, &[&ms.to_be_bytes()]);
                }
                self.close(element);
            }
            self.close(list);
            self.close_message(start);
        }
    }

    /// Writes an nlmsghdr and an nfgenmsg; returns where the message starts.
    fn header(&mut self, kind: u16, flags: u16, family: u8) -> usize {
        let start = self.bytes.len();
        self.seq = self.seq.wrapping_add(1);
        self.bytes.extend_from_slice(&0u32.to_ne_bytes()); // length, set on close
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(&flags.to_ne_bytes());
        self.bytes.extend_from_slice(&self.seq.to_ne_bytes());
        self.bytes.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        self.bytes.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, version 0, res_id
        start
    }

    fn close_message(&mut self, start: usize) {
        let length = (self.bytes.len() - start) as u32;
        self.bytes[start..start + 4].copy_from_slice(&length.to_ne_bytes());
    }

    /// An attribute whose value is `parts`, one after the other.
    fn attribute(&mut self, kind: u16, parts: &[&[u8]]) {
        let length = (4 + parts.iter().map(|p| p.len()).sum::<usize>()) as u16;
        self.bytes.extend_from_slice(&length.to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        parts.iter().for_each(|p| self.bytes.extend_from_slice(p));
        self.pad();
    }

    /// A NUL-terminated string attribute.
    fn string(&mut self, kind: u16, value: &str) {
        self.attribute(kind, &[value.as_bytes(), &[0]]);
    }

    fn open(&mut self, kind: u16) -> usize {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&0u16.to_ne_bytes());
        self.bytes
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn close(&mut self, start: usize) {
        let length = (self.bytes.len() - start) as u16;
        self.bytes[start..start + 2].copy_from_slice(&length.to_ne_bytes());
    }

    fn pad(&mut self) {
        while self.bytes.len() % 4 != 0 {
            self.bytes.push(0);
        }
    }

    fn finish(self) -> Batch {
        Batch {
            bytes: self.bytes,
            first: self.first,
            acks: self.acks,
        }
    }
}

/// A netfilter netlink socket, opened on first use and reopened after a socket error.
#[derive(Debug, Default)]
pub struct Netlink {
    socket: Option<Socket>,
    seq: u32,
    /// Where the kernel's answers are read (kept between batches).
    answers: Vec<u8>,
    /// Transactions the kernel committed from here (a refused batch commits nothing).
    committed: u32,
}

impl Netlink {
    /// Applies `changes` to `table` if they can go over netlink. `None`: not encodable here
    /// (see [`encode`]); the caller uses nft.
    pub fn apply(
        &mut self,
        table: &str,
        changes: &[ElementChange],
    ) -> Option<Result<(), NetlinkError>> {
        if let Some(batch) = encode_new(table, changes, self.seq) {
            match self.send(&batch) {
                // Some element was there already (a renewal): the kernel applied nothing.
                Err(NetlinkError::Refused(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                other => return Some(other),
            }
        }
        let batch = encode(table, changes, self.seq)?;
        Some(self.send(&batch))
    }

    /// Transactions committed from this socket so far (wrapping).
    pub fn committed(&self) -> u32 {
        self.committed
    }

    /// The ruleset's generation: one more with every committed transaction, ours or another
    /// tool's.
    pub fn generation(&mut self) -> Result<u32, NetlinkError> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let result = self.ask_generation(seq);
        self.forget_socket_after(&result);
        result
    }

    /// Sends `message` to the user-space netlink socket `portid` (the drift monitor's), never
    /// waiting: a full queue there is an error.
    pub fn send_to(&mut self, portid: u32, message: &[u8]) -> Result<(), NetlinkError> {
        let socket = self.socket()?;
        let address = rustix::net::netlink::SocketAddrNetlink::new(portid, 0);
        rustix::net::sendto(socket, message, rustix::net::SendFlags::DONTWAIT, &address)
            .map_err(std::io::Error::from)?;
        Ok(())
    }

    fn send(&mut self, batch: &Batch) -> Result<(), NetlinkError> {
        self.seq = batch.first.wrapping_add(batch.acks);
        let result = self.transact(batch);
        if result.is_ok() {
            self.committed = self.committed.wrapping_add(1);
        }
        self.forget_socket_after(&result);
        result
    }

    fn forget_socket_after<T>(&mut self, result: &Result<T, NetlinkError>) {
        if let Err(NetlinkError::Socket(_) | NetlinkError::Garbled(_)) = result {
            // A fresh socket has no stale answers in its queue.
            self.socket = None;
        }
    }

    fn socket(&mut self) -> Result<&mut Socket, NetlinkError> {
        Ok(match &mut self.socket {
            Some(socket) => socket,
            none => {
                let socket = Socket::new(
                    Domain::from(AF_NETLINK),
                    Type::RAW,
                    Some(Protocol::from(NETLINK_NETFILTER)),
                )?;
                socket.set_read_timeout(Some(ACK_TIMEOUT))?;
                none.insert(socket)
            }
        })
    }

    fn ask_generation(&mut self, seq: u32) -> Result<u32, NetlinkError> {
        let request = getgen_request(seq, NLM_F_ACK);
        self.socket()?;
        // Opened above; the answers buffer is borrowed beside it.
        let socket = self
            .socket
            .as_ref()
            .ok_or(NetlinkError::Garbled("no socket"))?;
        if socket.send(&request)? != request.len() {
            return Err(NetlinkError::Garbled("short send"));
        }
        self.answers.resize(64 * 1024, 0);
        let mut generation = None;
        loop {
            let n = (&*socket).read(&mut self.answers)?;
            let (id, acked) = generation_in(&self.answers[..n], seq)?;
            generation = generation.or(id);
            if acked {
                return generation.ok_or(NetlinkError::Garbled("no generation in the answer"));
            }
        }
    }

    fn transact(&mut self, batch: &Batch) -> Result<(), NetlinkError> {
        self.socket()?;
        // Opened above; the answers buffer is borrowed beside it.
        let socket = self
            .socket
            .as_ref()
            .ok_or(NetlinkError::Garbled("no socket"))?;
        // Unconnected and unbound: the datagram goes to the kernel, and the first send binds
        // the socket to a port id of its own.
        let sent = socket.send(&batch.bytes)?;
        if sent != batch.bytes.len() {
            return Err(NetlinkError::Garbled("short send"));
        }
        let mut answered = 0;
        let mut refused = None;
        // An ack is 36 bytes; an error echoes its message, at most ~64 KiB.
        self.answers.resize(64 * 1024, 0);
        while answered < batch.acks {
            let n = (&*socket).read(&mut self.answers)?;
            for (seq, code) in acks(&self.answers[..n])? {
                // Answers to an earlier, abandoned batch have other sequence numbers.
                if seq.wrapping_sub(batch.first) < batch.acks {
                    answered += 1;
                    if code != 0 && refused.is_none() {
                        refused = Some(std::io::Error::from_raw_os_error(-code));
                    }
                }
            }
        }
        match refused {
            Some(error) => Err(NetlinkError::Refused(error)),
            None => Ok(()),
        }
    }
}

/// A `GETGEN` request numbered `seq` (`flags` besides `NLM_F_REQUEST`): the kernel answers
/// with a `NEWGEN` message carrying the current generation.
pub(super) fn getgen_request(seq: u32, flags: u16) -> Vec<u8> {
    let mut request = Vec::with_capacity(NLMSG_HDRLEN + 4);
    request.extend_from_slice(&((NLMSG_HDRLEN + 4) as u32).to_ne_bytes());
    request.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN).to_ne_bytes());
    request.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    request.extend_from_slice(&seq.to_ne_bytes());
    request.extend_from_slice(&[0; 8]);
    request
}

/// The generation id in the attributes of a `NEWGEN` message (big-endian).
pub(super) fn generation_attribute(block: &[u8]) -> Option<u32> {
    attribute(block, NFTA_GEN_ID)
        .and_then(|v| v.try_into().ok())
        .map(u32::from_be_bytes)
}

/// A netlink length rounded up to the 4-byte alignment.
pub(super) fn align(length: usize) -> usize {
    length.div_ceil(4) * 4
}

/// The attributes of a block: (type without flags, payload).
pub(super) fn attributes(mut block: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let length = u16::from_ne_bytes(block.get(0..2)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(block.get(2..4)?.try_into().ok()?) & NLA_TYPE_MASK;
        if length < 4 {
            return None;
        }
        let payload = block.get(4..length)?;
        block = block.get(align(length).min(block.len())..)?;
        Some((kind, payload))
    })
}

/// The payload of the first attribute of type `kind` in a block.
pub(super) fn attribute(block: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(block).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

/// In one datagram of answers to the `GETGEN` numbered `seq`: the generation, and whether its
/// ack came (an error answer is the kernel refusing it).
fn generation_in(mut datagram: &[u8], seq: u32) -> Result<(Option<u32>, bool), NetlinkError> {
    let (mut generation, mut acked) = (None, false);
    while datagram.len() >= NLMSG_HDRLEN {
        let length = u32::from_ne_bytes(datagram[0..4].try_into().expect("4 bytes")) as usize;
        if length < NLMSG_HDRLEN || length > datagram.len() {
            return Err(NetlinkError::Garbled("message length"));
        }
        let kind = u16::from_ne_bytes(datagram[4..6].try_into().expect("2 bytes"));
        let this = u32::from_ne_bytes(datagram[8..12].try_into().expect("4 bytes")) == seq;
        if this && kind == NLMSG_ERROR {
            let code = datagram
                .get(16..20)
                .and_then(|b| b.try_into().ok())
                .map(i32::from_ne_bytes)
                .ok_or(NetlinkError::Garbled("short error message"))?;
            if code != 0 {
                return Err(NetlinkError::Refused(std::io::Error::from_raw_os_error(
                    -code,
                )));
            }
            acked = true;
        } else if this && kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
            // After the nfgenmsg header.
            let block = datagram.get(NLMSG_HDRLEN + 4..length).unwrap_or_default();
            generation = generation.or(generation_attribute(block));
        }
        let aligned = length.next_multiple_of(4).min(datagram.len());
        datagram = &datagram[aligned..];
    }
    Ok((generation, acked))
}

/// The (sequence number, error code) of every `NLMSG_ERROR` in one datagram; an ack is code 0.
fn acks(mut datagram: &[u8]) -> Result<Vec<(u32, i32)>, NetlinkError> {
    let mut out = Vec::new();
    while datagram.len() >= NLMSG_HDRLEN {
        let length = u32::from_ne_bytes(datagram[0..4].try_into().expect("4 bytes")) as usize;
        if length < NLMSG_HDRLEN || length > datagram.len() {
            return Err(NetlinkError::Garbled("message length"));
        }
        let kind = u16::from_ne_bytes(datagram[4..6].try_into().expect("2 bytes"));
        let seq = u32::from_ne_bytes(datagram[8..12].try_into().expect("4 bytes"));
        if kind == NLMSG_ERROR {
            if length < NLMSG_HDRLEN + 4 {
                return Err(NetlinkError::Garbled("short error message"));
            }
            let code = i32::from_ne_bytes(datagram[16..20].try_into().expect("4 bytes"));
            out.push((seq, code));
        }
        let aligned = length.next_multiple_of(4).min(datagram.len());
        datagram = &datagram[aligned..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
