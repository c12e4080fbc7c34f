//! A storm's batches applied with the drift monitor away, and the monitor told afterwards
//! whether another tool's transaction could have gone unheard meanwhile.
//!
//! While any socket listens to nf_tables notifications, the kernel builds one for every
//! element a batch adds (about 2 µs each, more than the insert): our own monitor is such a
//! listener, and it does not need to hear our own additions. So for a large batch the worker
//! takes the monitor's socket out of the group, applies the batch, and puts it back. What
//! another tool committed meanwhile is found by generation ids, with two markers the worker
//! sends to the monitor's socket to bracket the window in its queue:
//!
//! 1. the monitor's socket leaves the group; the worker sends `Begin`: everything queued
//!    before it was delivered while the monitor listened;
//! 2. the batch, counting the transactions it committed (k);
//! 3. the socket joins the group again; the worker reads the generation (J) and sends
//!    `End { k, J }`.
//!
//! The monitor takes L, the id of the last transaction it heard end before `Begin`: every
//! transaction with an id in (L, J] must be ours, so the window is sound only if J − L = k. A
//! transaction of another tool half heard at either edge (ids are taken before notifications
//! go out) has an id in that range and fails the count; so does one wholly unheard. A window
//! judged unsound, or a marker lost, is a structural drift: the worker reconciles.
//!
//! Owns the window's steps on the worker's side, the markers and the monitor's judging; the
//! monitor's socket and its reading are the monitor's.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::net::bind;
use rustix::net::netlink::SocketAddrNetlink;
use tracing::warn;

use super::netlink::{Netlink, NetlinkError};
use super::nft::ElementChange;

/// The notification group the monitor listens to (`NFNLGRP_NFTABLES`, 7), as a bind mask.
pub(super) const GROUPS: u32 = 1 << (7 - 1);
/// A marker's netlink message type: outside the netfilter subsystems' (`subsys << 8 | type`,
/// subsystems up to 12) and above the control types.
const MARKER_TYPE: u16 = 0x7f5b;
/// Tells a marker from any other message a socket might send the monitor.
const MAGIC: u32 = 0x5332_4221;
const NLMSG_HDRLEN: usize = 16;
const MARKER_LEN: usize = NLMSG_HDRLEN + 20;
/// A window whose `End` has not come by then lost it: judged unsound.
const WINDOW_LIMIT: Duration = Duration::from_secs(5);

/// The monitor's socket, for the worker to take out of the group and put back.
#[derive(Debug, Clone)]
pub struct Quiet {
    socket: Arc<OwnedFd>,
    portid: u32,
}

impl Quiet {
    pub(super) fn new(socket: Arc<OwnedFd>, portid: u32) -> Quiet {
        Quiet { socket, portid }
    }

    /// The monitor's port id, where the markers go.
    pub fn portid(&self) -> u32 {
        self.portid
    }

    /// No notification reaches the monitor (nor is built for it) until [`Quiet::join`].
    pub fn leave(&self) -> std::io::Result<()> {
        Ok(bind(
            &*self.socket,
            &SocketAddrNetlink::new(self.portid, 0),
        )?)
    }

    /// The monitor hears notifications again.
    pub fn join(&self) -> std::io::Result<()> {
        Ok(bind(
            &*self.socket,
            &SocketAddrNetlink::new(self.portid, GROUPS),
        )?)
    }
}

/// Applies `changes` to `table` over `netlink` with the monitor's socket out of the group,
/// the window bracketed by its markers (see the module's steps). The batch's result as
/// [`Netlink::apply`] gives it. Should the socket not leave, the batch goes as usual, heard.
pub fn apply(
    netlink: &mut Netlink,
    table: &str,
    changes: &[ElementChange],
    quiet: &Quiet,
    window: u32,
) -> Option<Result<(), NetlinkError>> {
    let Some(open) = Window::open(netlink, quiet, window) else {
        return netlink.apply(table, changes);
    };
    let result = netlink.apply(table, changes);
    open.close(netlink, result.as_ref());
    result
}

/// A window opened: the monitor's socket out of the group, `Begin` sent.
#[derive(Debug)]
pub struct Window<'a> {
    quiet: &'a Quiet,
    id: u32,
    /// The socket's commits when it opened.
    before: u32,
}

impl<'a> Window<'a> {
    /// Takes the monitor's socket out of the group and sends `Begin`; None when either
    /// fails (the socket is then back in the group).
    pub fn open(netlink: &mut Netlink, quiet: &'a Quiet, id: u32) -> Option<Window<'a>> {
        quiet.leave().ok()?;
        if netlink
            .send_to(quiet.portid, &Marker::Begin { window: id }.encode())
            .is_err()
        {
            // Without its marker the window could not be judged.
            rejoin(quiet);
            return None;
        }
        Some(Window {
            quiet,
            id,
            before: netlink.committed(),
        })
    }

    /// Puts the socket back and sends `End` with what the socket committed meanwhile (`last`:
    /// the result of its last batch, if any: a socket error leaves the count unknown).
    pub fn close(self, netlink: &mut Netlink, last: Option<&Result<(), NetlinkError>>) {
        let commits = match last {
            Some(Err(NetlinkError::Socket(_) | NetlinkError::Garbled(_))) => u32::MAX,
            _ => netlink.committed().wrapping_sub(self.before),
        };
        rejoin(self.quiet);
        let end = match netlink.generation() {
            Ok(generation) => Marker::End {
                window: self.id,
                commits,
                generation,
            },
            Err(_) => Marker::End {
                window: self.id,
                commits: u32::MAX,
                generation: 0,
            },
        };
        // Lost, the monitor judges the window unsound once it has waited too long for it.
        let _ = netlink.send_to(self.quiet.portid, &end.encode());
    }
}

/// Puts the monitor's socket back in the group; a failure leaves the monitor deaf, so it is
/// tried twice and then said.
fn rejoin(quiet: &Quiet) {
    if let Err(e) = quiet.join().or_else(|_| quiet.join()) {
        warn!(error = %e, "The nftables drift monitor could not listen again; drift is repaired every reconcile_interval until a later batch puts it back");
    }
}

/// What the worker tells the monitor of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// The monitor's socket left the group; window `window` begins.
    Begin {
        /// Pairs the two markers of one window.
        window: u32,
    },
    /// The socket is back in the group.
    End {
        /// As in `Begin`.
        window: u32,
        /// Transactions the worker committed in the window; `u32::MAX` when it cannot
        /// know (a socket error mid-batch).
        commits: u32,
        /// The generation read after the socket joined again.
        generation: u32,
    },
}

impl Marker {
    /// The marker as one netlink message.
    pub fn encode(self) -> Vec<u8> {
        let (kind, window, commits, generation) = match self {
            Marker::Begin { window } => (1u32, window, 0, 0),
            Marker::End {
                window,
                commits,
                generation,
            } => (2, window, commits, generation),
        };
        let mut out = Vec::with_capacity(MARKER_LEN);
        out.extend_from_slice(&(MARKER_LEN as u32).to_ne_bytes());
        out.extend_from_slice(&MARKER_TYPE.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        for word in [MAGIC, kind, window, commits, generation] {
            out.extend_from_slice(&word.to_ne_bytes());
        }
        out
    }

    /// A marker read from a user-space sender's datagram; None for anything else.
    pub fn decode(datagram: &[u8]) -> Option<Marker> {
        let word = |at: usize| {
            datagram
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
        };
        let kind = u16::from_ne_bytes(datagram.get(4..6)?.try_into().ok()?);
        if word(0)? as usize != MARKER_LEN || kind != MARKER_TYPE || word(16)? != MAGIC {
            return None;
        }
        let window = word(24)?;
        match word(20)? {
            1 => Some(Marker::Begin { window }),
            2 => Some(Marker::End {
                window,
                commits: word(28)?,
                generation: word(32)?,
            }),
            _ => None,
        }
    }
}

/// The monitor's account of generations: which transactions it heard, and the windows.
#[derive(Debug, Default)]
pub struct Generations {
    /// Every transaction with an id up to this one was heard whole or judged (None: not
    /// known, at the start or after lost notifications).
    through: Option<u32>,
    window: Option<Judged>,
}

/// A window as the monitor sees it.
#[derive(Debug)]
struct Judged {
    id: u32,
    from: Option<u32>,
    opened: Instant,
    /// The newest id heard after the socket joined again (before `End`).
    heard: Option<u32>,
}

/// The newer of two generation ids (they wrap).
fn newer(a: Option<u32>, b: u32) -> u32 {
    match a {
        Some(a) if b.wrapping_sub(a) > u32::MAX / 2 => a,
        _ => b,
    }
}

impl Generations {
    /// A transaction with id `id` ended (its `NEWGEN` was heard).
    pub fn heard(&mut self, id: u32) {
        match &mut self.window {
            Some(window) => window.heard = Some(newer(window.heard, id)),
            None => self.through = Some(newer(self.through, id)),
        }
    }

    /// Notifications were lost: nothing is known to have been heard.
    pub fn lost(&mut self) {
        *self = Generations::default();
    }

    /// A marker; true when it shows a window in which another transaction may have gone
    /// unheard (or a marker was lost).
    pub fn marker(&mut self, marker: Marker, now: Instant) -> bool {
        match marker {
            Marker::Begin { window } => {
                // A window still open lost its `End`.
                let lost = self.window.take().is_some();
                self.window = Some(Judged {
                    id: window,
                    from: self.through,
                    opened: now,
                    heard: None,
                });
                lost
            }
            Marker::End {
                window,
                commits,
                generation,
            } => {
                let open = self.window.take();
                let sound = open.as_ref().is_some_and(|w| {
                    w.id == window
                        && w.from
                            .is_some_and(|from| generation.wrapping_sub(from) == commits)
                });
                // Transactions after the generation was read were heard whole.
                let heard = open.and_then(|w| w.heard);
                self.through = Some(match heard {
                    Some(heard) => newer(Some(generation), heard),
                    None => generation,
                });
                !sound
            }
        }
    }

    /// True when a window has waited too long for its `End` (then closed, unknown).
    pub fn expired(&mut self, now: Instant) -> bool {
        if self
            .window
            .as_ref()
            .is_some_and(|w| now.saturating_duration_since(w.opened) > WINDOW_LIMIT)
        {
            self.lost();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_survive_their_encoding_and_nothing_else_reads_as_one() {
        for marker in [
            Marker::Begin { window: 7 },
            Marker::End {
                window: 7,
                commits: 2,
                generation: 41,
            },
        ] {
            assert_eq!(Marker::decode(&marker.encode()), Some(marker));
        }
        let mut other = Marker::Begin { window: 1 }.encode();
        other[16] ^= 1;
        assert_eq!(Marker::decode(&other), None, "no magic");
        assert_eq!(Marker::decode(&[0; 8]), None);
    }

    fn window(g: &mut Generations, id: u32, commits: u32, generation: u32) -> bool {
        let now = Instant::now();
        let begun = g.marker(Marker::Begin { window: id }, now);
        let ended = g.marker(
            Marker::End {
                window: id,
                commits,
                generation,
            },
            now,
        );
        begun || ended
    }

    #[test]
    fn a_window_is_sound_only_when_every_transaction_in_it_is_ours() {
        let mut g = Generations::default();
        g.heard(4);
        g.heard(5);
        // Ours: 6 and 7.
        assert!(!window(&mut g, 1, 2, 7));
        // Ours 8, another tool's 9: unheard.
        assert!(window(&mut g, 2, 1, 9));
        // Heard after the window: 10; then ours 11.
        g.heard(10);
        assert!(!window(&mut g, 3, 1, 11));
        // One we cannot count.
        assert!(window(&mut g, 4, u32::MAX, 12));
    }

    #[test]
    fn a_window_is_unsound_when_nothing_was_heard_before_it_or_a_marker_is_lost() {
        let mut g = Generations::default();
        assert!(window(&mut g, 1, 1, 3), "nothing heard before");
        assert!(!window(&mut g, 2, 1, 4));
        let now = Instant::now();
        // A `Begin` whose `End` never came, then another window.
        assert!(!g.marker(Marker::Begin { window: 3 }, now));
        assert!(g.marker(Marker::Begin { window: 4 }, now), "the lost End");
        // An `End` of another window.
        assert!(g.marker(
            Marker::End {
                window: 9,
                commits: 0,
                generation: 5
            },
            now
        ));
        // A window left open too long.
        assert!(!g.marker(Marker::Begin { window: 5 }, now));
        assert!(!g.expired(now));
        assert!(g.expired(now + WINDOW_LIMIT + Duration::from_secs(1)));
        g.heard(9);
        assert!(!window(&mut g, 6, 1, 10));
    }

    #[test]
    fn what_was_heard_after_the_generation_was_read_counts_as_heard() {
        let mut g = Generations::default();
        g.heard(1);
        let now = Instant::now();
        g.marker(Marker::Begin { window: 1 }, now);
        // Another tool's transaction after the worker read 3, heard before `End`.
        g.heard(4);
        assert!(!g.marker(
            Marker::End {
                window: 1,
                commits: 2,
                generation: 3
            },
            now
        ));
        assert!(!window(&mut g, 2, 1, 5));
    }

    #[test]
    fn the_newer_of_two_generation_ids_is_found_across_their_wrap() {
        assert_eq!(newer(Some(u32::MAX), 1), 1);
        assert_eq!(newer(Some(1), u32::MAX), 1);
        assert_eq!(newer(Some(5), 3), 5);
        assert_eq!(newer(None, 3), 3);
    }
}
