//! Memory of the failure tracker, measured with a counting allocator: 1,000,000 distinct
//! failing addresses with a cap of 100,000 stay within the cap, and what one tracked address
//! costs. The numbers are printed for the README (`cargo test --release --test tracker_memory
//! -- --nocapture`).
#![allow(unsafe_code)] // a counting GlobalAlloc must implement an unsafe trait

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use syslog2ban::jail::window::FailureWindow;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn address(i: u32) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        0,
        0,
        0,
        0,
        (i >> 16) as u16,
        i as u16,
    ))
}

/// Bytes held by a window after `n` distinct addresses failed once (maxretry 5).
fn fill(cap: usize, n: u32) -> (FailureWindow, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    let mut window = FailureWindow::new(5, Duration::from_secs(600), cap);
    let t0 = Instant::now();
    for i in 0..n {
        window.record(address(i), t0 + Duration::from_millis(u64::from(i / 1000)));
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    (window, bytes)
}

// One test function: the allocator counter is global, so the two measurements must not run
// in parallel.
#[test]
fn memory_stays_within_the_cap_and_per_address_cost_is_bounded() {
    {
        let (window, bytes) = fill(100_000, 1_000_000);
        assert_eq!(window.tracked(), 100_000);
        assert_eq!(window.evicted(), 900_000);
        let per = bytes as f64 / window.tracked() as f64;
        eprintln!(
            "cap 100000, 1000000 addresses: {bytes} bytes live, {per:.0} bytes per tracked address"
        );
        // The bound the cap exists for: under 200 bytes each, so 100k cost < 20 MB.
        assert!(per < 200.0, "{per} bytes per tracked address");
    }
    let (window, bytes) = fill(1_000_000, 1_000_000);
    assert_eq!(window.tracked(), 1_000_000);
    let per = bytes as f64 / window.tracked() as f64;
    eprintln!("1000000 tracked addresses: {bytes} bytes live, {per:.0} bytes per tracked address");
    assert!(per < 200.0, "{per} bytes per tracked address");
}
