//! Every shipped jail in `conf.d/` against its fixtures in `tests/fixtures/<jail>/`:
//! `match.log` (`EXPECTED_IP LINE`: must match with that address), `nomatch.log` (`LINE`: must
//! not match), `injection.log` (`FORBIDDEN_IP LINE`: must never yield that address, as a
//! failure or as a login, in any mode of the jail).

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use syslog2ban::config::{self, JailConfig};
use syslog2ban::jail::filter::{Filter, FilterMatch};
use syslog2ban::regex_check::check_line;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_jails() -> Vec<JailConfig> {
    let mut files: Vec<PathBuf> = fs::read_dir(root().join("conf.d"))
        .expect("conf.d exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    config::load_jails(&files, None).unwrap_or_else(|e| panic!("conf.d does not load:\n{e}"))
}

/// (line number, content) of the non-comment, non-blank lines of a fixture file.
fn fixture_lines(path: &Path) -> Vec<(usize, String)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect()
}

fn split_address(path: &Path, number: usize, line: &str) -> (IpAddr, String) {
    let (ip, rest) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("{}:{number}: expected 'IP LINE'", path.display()));
    let ip = ip
        .parse()
        .unwrap_or_else(|_| panic!("{}:{number}: '{ip}' is not an address", path.display()));
    (ip, rest.to_string())
}

/// The jail's filter in each of its modes beyond normal (those of fail2ban's names it has).
fn modes_of(jail: &JailConfig) -> Vec<Filter> {
    let file = root().join("conf.d").join(format!("{}.toml", jail.name));
    ["ddos", "extra", "aggressive"]
        .into_iter()
        .filter_map(|mode| {
            config::load_jails_in_mode(
                std::slice::from_ref(&file),
                Some(jail.name.as_str()),
                Some(mode),
            )
            .ok()
        })
        .filter_map(|mut jails| jails.pop())
        .map(|j| j.filter)
        .collect()
}

#[test]
fn every_shipped_filter_passes_its_fixtures() {
    let now = chrono::Utc::now();
    let jails = shipped_jails();
    assert!(!jails.is_empty(), "conf.d ships no jail");
    let mut failures = Vec::new();
    let mut checked = 0;
    for jail in &jails {
        let dir = root().join("tests/fixtures").join(jail.name.as_str());
        let matches = dir.join("match.log");
        assert!(
            matches.is_file(),
            "jail '{}' has no fixtures at {}",
            jail.name,
            matches.display()
        );
        for (n, line) in fixture_lines(&matches) {
            let (want, log) = split_address(&matches, n, &line);
            let got = check_line(&jail.filter, n, &log, now);
            checked += 1;
            if !got.matched || got.host != Some(want) {
                failures.push(format!(
                    "{}:{n}: want {want}, got {:?} ({})",
                    matches.display(),
                    got.host,
                    log
                ));
            }
        }
        let nomatch = dir.join("nomatch.log");
        if nomatch.is_file() {
            for (n, log) in fixture_lines(&nomatch) {
                let got = check_line(&jail.filter, n, &log, now);
                checked += 1;
                if got.matched {
                    failures.push(format!(
                        "{}:{n}: must not match, got {:?} ({log})",
                        nomatch.display(),
                        got.host
                    ));
                }
            }
        }
        let injection = dir.join("injection.log");
        if injection.is_file() {
            // In every mode, and for logins too: a forged login must not forgive an address.
            for filter in std::iter::once(jail.filter.clone()).chain(modes_of(jail)) {
                for (n, line) in fixture_lines(&injection) {
                    let (forbidden, log) = split_address(&injection, n, &line);
                    checked += 1;
                    let Ok(record) = syslog2ban::parse::parse_line(&log, now) else {
                        continue;
                    };
                    if let FilterMatch::Failure { host, .. } = filter.check(&record.message) {
                        if host == forbidden {
                            failures.push(format!(
                                "{}:{n}: injected {forbidden} was captured ({log})",
                                injection.display()
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} fixture lines failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{checked} fixture lines over {} jails passed", jails.len());
}
