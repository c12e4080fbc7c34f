//! Several datagrams per receive call (Linux `recvmmsg`): at a few hundred thousand datagrams
//! a second, one system call per datagram is what loses them. Owns the receive buffers and
//! the only `unsafe` of the UDP path; it knows nothing of what a datagram says or where it
//! goes.

// The crate denies unsafe code; this module is the exception, each block with its reason.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Datagrams per call. 32 halves the calls of 16 and costs 32 buffers of `max_frame + 1`
/// bytes, of which only the pages a datagram touches are ever resident.
pub(super) const BATCH: usize = 32;

/// The buffers of one socket's receive loop.
pub(super) struct Batch {
    /// `BATCH` slots of `slot` bytes each.
    data: Vec<u8>,
    slot: usize,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    received: usize,
}

impl Batch {
    /// Slots of `slot` bytes (one more than the largest datagram accepted, so an oversize one
    /// is told from one that just fits).
    pub(super) fn new(slot: usize) -> Self {
        Batch {
            data: vec![0; BATCH * slot],
            slot,
            // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
            addrs: vec![unsafe { zeroed() }; BATCH],
            lens: vec![0; BATCH],
            received: 0,
        }
    }

    /// Receives what is queued on `socket`, up to `BATCH` datagrams, without blocking: the
    /// number received, or `WouldBlock` when nothing is queued.
    pub(super) fn receive(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.received = 0;
        let fd: RawFd = socket.as_raw_fd();
        let slot = self.slot;
        // On the stack, rebuilt per call (raw pointers would make a kept copy unsendable
        // between the tasks' threads); about 2.5 KB.
        let mut chunks = self.data.chunks_exact_mut(slot);
        let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|_| {
            let chunk = chunks.next().unwrap_or_default();
            libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            }
        });
        // SAFETY: mmsghdr is plain old data; all zeroes is a valid value.
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for ((header, iovec), addr) in headers
            .iter_mut()
            .zip(iovecs.iter_mut())
            .zip(self.addrs.iter_mut())
        {
            header.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at one iovec over its own slot of `self.data` and at its
        // own sockaddr_storage, all alive and not otherwise borrowed until the call returns;
        // the kernel writes at most iov_len / msg_namelen bytes into them.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (len, header) in self.lens.iter_mut().zip(&headers).take(n) {
            *len = header.msg_len as usize;
        }
        self.received = n;
        Ok(n)
    }

    /// The `i`th datagram of the last receive: its bytes (at most the slot) and its sender
    /// (None for an address family other than IPv4/IPv6).
    pub(super) fn datagram(&self, i: usize) -> Option<(&[u8], Option<SocketAddr>)> {
        if i >= self.received {
            return None;
        }
        let start = i * self.slot;
        let len = self.lens[i].min(self.slot);
        Some((&self.data[start..start + len], socket_addr(&self.addrs[i])))
    }
}

/// The sender of a datagram, from what the kernel wrote.
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large and
            // aligned enough for.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                u32::from_be(v6.sin6_flowinfo),
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn receives_what_is_queued_with_each_sender_and_then_would_block() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_nonblocking(true).unwrap();
        let to = receiver.local_addr().unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.send_to(b"first", to).unwrap();
        b.send_to(b"second", to).unwrap();
        a.send_to(&[b'x'; 20], to).unwrap();
        let mut batch = Batch::new(9);
        assert_eq!(batch.receive(&receiver).unwrap(), 3);
        assert_eq!(
            batch.datagram(0),
            Some((&b"first"[..], Some(a.local_addr().unwrap())))
        );
        assert_eq!(
            batch.datagram(1),
            Some((&b"second"[..], Some(b.local_addr().unwrap())))
        );
        // Longer than the slot: cut to it, which the caller reads as oversize.
        assert_eq!(batch.datagram(2).unwrap().0.len(), 9);
        assert_eq!(batch.datagram(3), None);
        let err = batch.receive(&receiver).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn more_than_a_batch_takes_several_calls() {
        let receiver = UdpSocket::bind("[::1]:0").unwrap();
        receiver.set_nonblocking(true).unwrap();
        let to = receiver.local_addr().unwrap();
        let sender = UdpSocket::bind("[::1]:0").unwrap();
        for i in 0..(BATCH + 5) {
            sender.send_to(i.to_string().as_bytes(), to).unwrap();
        }
        let mut batch = Batch::new(64);
        assert_eq!(batch.receive(&receiver).unwrap(), BATCH);
        assert_eq!(batch.datagram(0).unwrap().0, b"0");
        assert_eq!(batch.receive(&receiver).unwrap(), 5);
        assert_eq!(
            batch.datagram(4).unwrap(),
            (
                (BATCH + 4).to_string().as_bytes(),
                Some(sender.local_addr().unwrap())
            )
        );
    }
}
