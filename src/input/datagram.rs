//! Datagram listeners: UDP (one message per datagram, RFC 5426, received in batches) and unix
//! datagram sockets (`/dev/log` style). Each datagram is one frame, handed on with its
//! transport origin.
//!
//! Owns binding (or taking the socket systemd passed), the receive loops, allow-lists and the
//! size check. It never reads what a datagram says.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use tokio::io::Interest;
use tokio::net::{UdpSocket, UnixDatagram};
use tracing::{debug, warn};

use super::activation;
use super::message::{allowed, message, message_at, InputContext, Origin, Payload};
use super::mmsg::{Batch, BATCH};
use crate::metrics::{ListenerMetrics, Metrics};

/// A UDP socket: inherited from systemd, or bound here with the configured SO_RCVBUF.
pub(super) fn udp_socket(address: SocketAddr, recv_buffer: Option<usize>) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = match activation::take_inet(Type::DGRAM, address) {
        Some(inherited) => inherited,
        None => {
            let socket = Socket::new(
                Domain::for_address(address),
                Type::DGRAM,
                Some(Protocol::UDP),
            )?;
            if address.is_ipv6() {
                // "[::]:514" should not also grab IPv4 unless asked; matches std's bind.
                let _ = socket.set_only_v6(true);
            }
            socket.bind(&address.into())?;
            socket
        }
    };
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// Removes a socket left by a previous run; refuses to delete anything else.
pub(super) fn remove_stale_socket(path: &Path) -> Result<(), ()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(|_| ()),
        Ok(_) => Err(()),
    }
}

/// Trailing CR/LF/NUL are transport noise in datagrams (RFC 5426 senders differ).
fn trim_datagram(mut data: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r' | b'\0'] = data {
        data = rest;
    }
    data
}

pub(super) async fn udp_loop(
    socket: UdpSocket,
    max_frame: usize,
    allow: Arc<Vec<IpNet>>,
    counters: Arc<ListenerMetrics>,
    ctx: InputContext,
) {
    // One byte more than allowed tells an oversize datagram from one that just fits.
    let mut batch = Batch::new(max_frame + 1);
    let mut accepted: Vec<(SocketAddr, std::ops::Range<usize>)> = Vec::with_capacity(BATCH);
    let mut batcher = ctx.tx.batcher();
    loop {
        let ready = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = socket.readable() => r,
        };
        let received = match ready
            .and_then(|()| socket.try_io(Interest::READABLE, || batch.receive(&socket)))
        {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                warn!(listener = %counters.label, error = %e, "Receive failed");
                continue;
            }
        };
        // One allocation and one clock reading for the whole batch: each message is a slice
        // of the batch's bytes, and they all arrived now.
        accepted.clear();
        let mut bytes = BytesMut::new();
        for i in 0..received {
            let Some((data, Some(peer))) = batch.datagram(i) else {
                continue;
            };
            if !allowed(&allow, peer.ip()) {
                Metrics::inc(&counters.refused_senders);
                debug!(listener = %counters.label, %peer, "Datagram from a sender outside allow dropped");
                continue;
            }
            let Some(data) = accept(&counters, data, max_frame, Origin::Peer(peer)) else {
                continue;
            };
            let start = bytes.len();
            bytes.extend_from_slice(data);
            accepted.push((peer, start..bytes.len()));
        }
        let bytes = bytes.freeze();
        let arrived = (crate::clock::now(), crate::clock::wall_now());
        for (peer, range) in accepted.drain(..) {
            let origin = Origin::Peer(peer);
            let frame = bytes.slice(range);
            let raw = message_at(&ctx, origin, None, Payload::Frame(frame), arrived);
            if batcher.push(raw).await.is_err() {
                return;
            }
        }
        if batcher.flush().await.is_err() {
            return;
        }
    }
}

/// A datagram's message, or None (counted) when it is oversize or empty.
fn accept<'a>(
    counters: &ListenerMetrics,
    data: &'a [u8],
    max_frame: usize,
    origin: Origin,
) -> Option<&'a [u8]> {
    if data.len() > max_frame {
        Metrics::inc(&counters.oversize);
        debug!(listener = %counters.label, %origin, "Oversize datagram skipped");
        return None;
    }
    let data = trim_datagram(data);
    if data.is_empty() {
        return None;
    }
    Metrics::inc(&counters.messages);
    Some(data)
}

pub(super) async fn unix_loop(
    socket: UnixDatagram,
    path: Option<PathBuf>,
    max_frame: usize,
    counters: Arc<ListenerMetrics>,
    ctx: InputContext,
) {
    let mut buf = vec![0u8; max_frame + 1];
    loop {
        let received = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            r = socket.recv(&mut buf) => r,
        };
        match received {
            Ok(len) => {
                if !deliver(&ctx, &counters, Origin::Local, &buf[..len], max_frame).await {
                    break;
                }
            }
            Err(e) => warn!(listener = %counters.label, error = %e, "Receive failed"),
        }
    }
    if let Some(path) = path {
        let _ = std::fs::remove_file(&path);
    }
}

/// Sends one datagram on; false when the pipeline is gone.
async fn deliver(
    ctx: &InputContext,
    counters: &ListenerMetrics,
    origin: Origin,
    data: &[u8],
    max_frame: usize,
) -> bool {
    let Some(data) = accept(counters, data, max_frame, origin) else {
        return true;
    };
    ctx.tx
        .send(message(
            ctx,
            origin,
            None,
            Payload::Frame(Bytes::copy_from_slice(data)),
        ))
        .await
        .is_ok()
}
