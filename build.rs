//! Decides whether the root-only end-to-end tests in `integration/` run: they need network
//! namespaces and real peers, so they are compiled as ignored (with the reason) unless the
//! build runs as root or with `CI=true` (what `.ci/run` sets). A normal user's `cargo test`
//! then lists them as ignored instead of passing them as skipped.

fn main() {
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rustc-check-cfg=cfg(s2b_netns)");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    // The effective uid is the third field of the `Uid:` line.
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            Some(line.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if ci || root {
        println!("cargo:rustc-cfg=s2b_netns");
    }
}
