//! The `hosts-deny` backend, for services behind tcp-wrappers with no firewall: one entry per
//! banned address in a hosts.deny file, each after a marker line, so the file's own lines are
//! never touched.
//!
//! Owns only the entries after its markers. Every change rewrites the file atomically (a
//! temporary file in the same directory, synced, then renamed over it), so a daemon reading it
//! sees the old file or the new one, never half. tcp-wrappers has no timeouts: the daemon's
//! unban at a ban's end removes the entry, and the reconcile removes any entry whose ban ended
//! while the daemon was down. On a target the same file is read with `cat` and replaced with
//! `tee` to a temporary file, `sync` and `mv` over its SSH session.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use thiserror::Error;

use super::nft::ElementChange;
use super::tool::{Runner, ToolError};
use crate::target::Target;

/// The line before each of our entries.
pub const MARKER: &str = "# syslog2ban: the next line is a ban; it is removed when the ban ends";

/// Reading or writing the file failed.
#[derive(Debug, Error)]
#[error("{path}: {source}")]
pub struct HostsDenyError {
    /// The file.
    path: PathBuf,
    /// OS error.
    source: std::io::Error,
}

/// The file and the daemon list of our entries, on this host or a target.
#[derive(Debug, Clone)]
pub struct HostsDeny {
    path: PathBuf,
    daemons: String,
    /// None: this host's file, through the file system. Some: a target's, through `cat`,
    /// `tee`, `chmod` and `mv` over its SSH session.
    runner: Option<Arc<dyn Runner>>,
}

/// The file split into lines that are not ours and our entries.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    others: Vec<String>,
    ours: BTreeSet<Target>,
}

impl HostsDeny {
    /// The backend writing `daemons: ADDRESS` entries to `path` on this host.
    pub fn new(path: PathBuf, daemons: String) -> Self {
        HostsDeny {
            path,
            daemons,
            runner: None,
        }
    }

    /// The same for a file on a target, whose tools `runner` runs.
    pub fn on(runner: Arc<dyn Runner>, path: PathBuf, daemons: String) -> Self {
        HostsDeny {
            path,
            daemons,
            runner: Some(runner),
        }
    }

    /// The file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies changes to our entries; the file is rewritten only if they change it.
    pub async fn apply(&self, changes: &[ElementChange]) -> Result<(), HostsDenyError> {
        let mut parsed = self.read().await?;
        let before = parsed.ours.clone();
        // tcp-wrappers denies an address to the listed daemons, not per port: a per-service
        // ban is an entry for its address. Removals first, so a ban that narrows to ports
        // (its whole-address element removed, its port elements added) keeps its entry.
        for change in changes {
            if let ElementChange::Remove(e) = change {
                parsed.ours.remove(&e.target);
            }
        }
        for change in changes {
            if let ElementChange::Add(e, _) = change {
                parsed.ours.insert(e.target);
            }
        }
        if parsed.ours != before {
            self.write(&parsed).await?;
        }
        Ok(())
    }

    /// Makes our entries exactly `wanted`; returns (entries now, entries added or removed).
    pub async fn reconcile(
        &self,
        wanted: BTreeSet<Target>,
    ) -> Result<(usize, usize), HostsDenyError> {
        let mut parsed = self.read().await?;
        let fixes = parsed.ours.symmetric_difference(&wanted).count();
        if fixes > 0 {
            parsed.ours = wanted;
            self.write(&parsed).await?;
        }
        Ok((parsed.ours.len(), fixes))
    }

    /// Our entries, as the reconcile compares them (tcp-wrappers keeps no timeouts).
    pub async fn entries(&self) -> Result<super::reconcile::Actual, HostsDenyError> {
        Ok(self
            .read()
            .await?
            .ours
            .into_iter()
            .map(|t| (crate::target::Element::all(t), None))
            .collect())
    }

    /// Removes all our entries (a clean stop that does not keep bans).
    pub async fn clear(&self) -> Result<(), HostsDenyError> {
        self.reconcile(BTreeSet::new()).await.map(drop)
    }

    async fn read(&self) -> Result<Parsed, HostsDenyError> {
        let Some(runner) = &self.runner else {
            let path = self.path.clone();
            let text = tokio::task::spawn_blocking(move || match std::fs::read_to_string(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                other => other,
            })
            .await
            .map_err(|e| self.error(std::io::Error::other(e)))?
            .map_err(|e| self.error(e))?;
            return Ok(parse(&text));
        };
        let path = self.path.to_string_lossy().into_owned();
        match runner.run(Path::new("cat"), vec![path], None).await {
            Ok(text) => Ok(parse(&text)),
            Err(ToolError::Failed { stderr, .. }) if stderr.contains("No such file") => {
                Ok(Parsed::default())
            }
            Err(e) => Err(self.error(std::io::Error::other(e.to_string()))),
        }
    }

    async fn write(&self, parsed: &Parsed) -> Result<(), HostsDenyError> {
        let text = render(parsed, &self.daemons);
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{name}.syslog2ban-new"));
        let Some(runner) = &self.runner else {
            let path = self.path.clone();
            return tokio::task::spawn_blocking(move || write_local(&path, &temp, &text))
                .await
                .map_err(|e| self.error(std::io::Error::other(e)))?
                .map_err(|e| self.error(e));
        };
        let (path, temp) = (
            self.path.to_string_lossy().into_owned(),
            temp.to_string_lossy().into_owned(),
        );
        let run = |program: &'static str, args: Vec<String>, stdin: Option<Vec<u8>>| async move {
            runner
                .run(Path::new(program), args, stdin)
                .await
                .map_err(|e| self.error(std::io::Error::other(e.to_string())))
        };
        run("tee", vec![temp.clone()], Some(text.into_bytes())).await?;
        // The file keeps its mode; a new one gets tee's (umask) mode, usually 0644.
        let _ = run(
            "chmod",
            vec![format!("--reference={path}"), temp.clone()],
            None,
        )
        .await;
        run("sync", vec![temp.clone()], None).await?;
        run("mv", vec!["-f".into(), temp, path], None)
            .await
            .map(drop)
    }

    fn error(&self, source: std::io::Error) -> HostsDenyError {
        HostsDenyError {
            path: self.path.clone(),
            source,
        }
    }
}

/// Writes `text` to `temp` (synced, with `path`'s mode) and renames it over `path`.
fn write_local(path: &Path, temp: &Path, text: &str) -> std::io::Result<()> {
    // The file keeps its mode (tcp-wrappers needs it world-readable, usually 0644).
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode());
    let written = (|| {
        let mut file = std::fs::File::create(temp)?;
        file.write_all(text.as_bytes())?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        std::fs::rename(temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(temp);
    }
    written
}

fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line != MARKER {
            parsed.others.push(line.to_string());
            continue;
        }
        // Our entry follows its marker; anything else there is someone's edit, kept.
        match lines.next() {
            Some(entry) => match parse_entry(entry) {
                Some(target) => {
                    parsed.ours.insert(target);
                }
                None => parsed.others.push(entry.to_string()),
            },
            None => break,
        }
    }
    parsed
}

/// `DAEMONS: ADDRESS` as `entry` writes it.
fn parse_entry(entry: &str) -> Option<Target> {
    let (_, client) = entry.split_once(':')?;
    let client = client.trim();
    if let Some(rest) = client.strip_prefix('[') {
        let (address, prefix) = rest.split_once(']')?;
        return match prefix.strip_prefix('/') {
            Some(len) => format!("{address}/{len}").parse().ok(),
            None if prefix.is_empty() => address.parse().ok(),
            None => None,
        };
    }
    match client.split_once('/') {
        Some((address, mask)) => {
            let mask: std::net::Ipv4Addr = mask.parse().ok()?;
            let len = u32::from(mask).leading_ones();
            format!("{address}/{len}").parse().ok()
        }
        None => client.parse().ok(),
    }
}

/// One entry in tcp-wrappers' syntax: IPv6 in brackets, IPv4 prefixes as net/mask.
fn entry(daemons: &str, target: &Target) -> String {
    let net = target.net();
    match net {
        ipnet::IpNet::V6(v6) if target.is_host() => format!("{daemons}: [{}]", v6.addr()),
        ipnet::IpNet::V6(v6) => format!("{daemons}: [{}]/{}", v6.network(), v6.prefix_len()),
        ipnet::IpNet::V4(v4) if target.is_host() => format!("{daemons}: {}", v4.addr()),
        ipnet::IpNet::V4(v4) => format!("{daemons}: {}/{}", v4.network(), v4.netmask()),
    }
}

fn render(parsed: &Parsed, daemons: &str) -> String {
    let mut text = String::new();
    for line in &parsed.others {
        text.push_str(line);
        text.push('\n');
    }
    for target in &parsed.ours {
        text.push_str(MARKER);
        text.push('\n');
        text.push_str(&entry(daemons, target));
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: &str) -> Target {
        s.parse().unwrap()
    }

    #[test]
    fn entries_use_tcp_wrappers_syntax_and_read_back() {
        for (target, line) in [
            ("198.51.100.7", "ALL: 198.51.100.7"),
            ("198.51.100.0/24", "ALL: 198.51.100.0/255.255.255.0"),
            ("2001:db8::7", "ALL: [2001:db8::7]"),
            ("2001:db8:1::/48", "ALL: [2001:db8:1::]/48"),
        ] {
            assert_eq!(entry("ALL", &t(target)), line);
            assert_eq!(parse_entry(line), Some(t(target)), "{line}");
        }
    }

    #[tokio::test]
    async fn the_files_own_lines_are_kept_in_place_and_ours_follow_markers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.deny");
        std::fs::write(&path, "# site policy\nsshd: 192.0.2.1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let deny = HostsDeny::new(path.clone(), "sshd".into());
        deny.apply(&[
            ElementChange::Add(t("198.51.100.7").into(), Some(Duration::from_secs(60))),
            ElementChange::Add(t("2001:db8::7").into(), None),
        ])
        .await
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "# site policy\nsshd: 192.0.2.1\n{MARKER}\nsshd: 198.51.100.7\n{MARKER}\nsshd: [2001:db8::7]\n"
            )
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        deny.apply(&[ElementChange::Remove(t("198.51.100.7").into())])
            .await
            .unwrap();
        let (present, fixes) = deny
            .reconcile([t("2001:db8::7")].into_iter().collect())
            .await
            .unwrap();
        assert_eq!((present, fixes), (1, 0));
        deny.clear().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# site policy\nsshd: 192.0.2.1\n"
        );
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn a_reconcile_restores_a_wiped_file_and_drops_stale_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.deny");
        std::fs::write(&path, format!("{MARKER}\nALL: 198.51.100.9\n")).unwrap();
        let deny = HostsDeny::new(path.clone(), "ALL".into());
        let (present, fixes) = deny
            .reconcile([t("198.51.100.7")].into_iter().collect())
            .await
            .unwrap();
        assert_eq!((present, fixes), (1, 2));
        std::fs::remove_file(&path).unwrap();
        let (present, fixes) = deny
            .reconcile([t("198.51.100.7")].into_iter().collect())
            .await
            .unwrap();
        assert_eq!((present, fixes), (1, 1));
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("ALL: 198.51.100.7\n"));
    }
}
