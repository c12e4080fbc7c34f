//! The news the ban manager sends back to the failure windows: the bans it makes and the
//! bans that end, so that the windows neither count again the failures of an attacker
//! already banned nor keep forgetting to count one whose ban ended.
//!
//! Owns the shared handle and its bounded queue of news; what the windows do with it is the
//! jails'.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::JailName;

/// What the ban manager tells the window task, the one way news flows back against the
/// pipeline: each ban it makes and each ban that ends, in order. Shared by handle; the window
/// task checks it before each hit (one atomic load while nothing is new).
/// - A ban made: its address is taken as reported in its jail. The windows know the bans of
///   their own offences already; this tells them of the others (adopted from another
///   collector, claimed by the cluster's shared count, made by hand), so a storm's later
///   failures of an attacker banned that way are neither counted again here nor sent to the
///   cluster's engine. (A jail whose bans go where the attack happened keeps counting them:
///   which hosts such a ban covers is the ban manager's to know.)
/// - A ban ended (expiry, unban, a feed dropping one): its jail forgets the address, which
///   counts again from its next failure. Only that jail and address: in a long storm bans
///   end all the time, and each must not make every reported attacker count again.
#[derive(Debug, Clone, Default)]
pub struct BanFeedback(Arc<FeedbackInner>);

#[derive(Debug, Default)]
struct FeedbackInner {
    waiting: AtomicBool,
    news: Mutex<BanNews>,
}

/// What changed since the window task last looked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BanNews {
    /// The changes, oldest first.
    pub changes: Vec<BanChange>,
    /// More changed than the news holds (100,000 changes): the list is incomplete, and
    /// every jail must forget every address it reported (the safe side: they count again).
    pub overflowed: bool,
}

/// One change to the bans, as the failure windows need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanChange {
    /// `jail` bans `address` (the prefix's own address for a prefix ban, as the jail keys it).
    Banned {
        /// The jail.
        jail: JailName,
        /// The address.
        address: IpAddr,
    },
    /// `jail`'s ban of `address` ended.
    Lifted {
        /// The jail.
        jail: JailName,
        /// The address.
        address: IpAddr,
    },
}

/// Most changes waiting for the window task; past it, the news says only that it overflowed.
pub(crate) const NEWS_CAP: usize = 100_000;

impl BanFeedback {
    /// `jail` bans `address` now.
    pub fn banned(&self, jail: &JailName, address: IpAddr) {
        self.push(BanChange::Banned {
            jail: jail.clone(),
            address,
        });
    }

    /// `jail`'s ban of `address` ended.
    pub fn lifted(&self, jail: &JailName, address: IpAddr) {
        self.push(BanChange::Lifted {
            jail: jail.clone(),
            address,
        });
    }

    fn push(&self, change: BanChange) {
        let mut news = self.0.news.lock().unwrap_or_else(|p| p.into_inner());
        if news.changes.len() < NEWS_CAP {
            news.changes.push(change);
        } else {
            news.overflowed = true;
        }
        self.0.waiting.store(true, Ordering::Release);
    }

    /// What changed since the last call, or None when nothing did.
    pub fn take(&self) -> Option<BanNews> {
        // A load first: the window task asks before every hit, and a swap would write the
        // flag's cache line each time.
        if !self.0.waiting.load(Ordering::Relaxed) || !self.0.waiting.swap(false, Ordering::Acquire)
        {
            return None;
        }
        let news = std::mem::take(&mut *self.0.news.lock().unwrap_or_else(|p| p.into_inner()));
        (news.overflowed || !news.changes.is_empty()).then_some(news)
    }
}
