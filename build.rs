//! Decides whether the root-only end-to-end tests in `integration/` run: they need network
//! namespaces and real peers, so they are compiled as ignored (with the reason) unless the
//! build runs as root or with `CI=true` (what `.ci/run` sets). A normal user's `cargo test`
//! then lists them as ignored instead of passing them as skipped.
//!
//! Likewise the fail2ban compatibility tests need fail2ban's annotated sample logs:
//! `$S2B_F2B_CORPUS`, or Debian's fail2ban package (cfg `s2b_f2b_corpus`).

fn main() {
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rustc-check-cfg=cfg(s2b_netns)");
    println!("cargo:rerun-if-env-changed=S2B_F2B_CORPUS");
    println!("cargo:rustc-check-cfg=cfg(s2b_f2b_corpus)");
    let debian_logs = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs";
    println!("cargo:rerun-if-changed={debian_logs}");
    let corpus = match std::env::var_os("S2B_F2B_CORPUS") {
        Some(dir) => std::path::Path::new(&dir).join("logs").is_dir(),
        None => {
            std::path::Path::new(debian_logs).is_dir()
                && std::path::Path::new("/etc/fail2ban/filter.d").is_dir()
        }
    };
    if corpus {
        println!("cargo:rustc-cfg=s2b_f2b_corpus");
    }
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
