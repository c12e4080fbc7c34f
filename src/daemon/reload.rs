//! Reload as a diff: what a new configuration changes, as a list of steps the daemon applies.
//!
//! Pure: compares two compiled configurations and decides, without touching anything, which
//! listeners stop, start or stay (an unchanged listener keeps its socket and connections; a
//! TLS one re-reads its certificates), that the jails are handed over (the pipeline keeps
//! the failure windows of jails that still exist, the manager keeps every ban; the notifiers
//! and feeds are handed over too), and which changes only a restart can apply (then nothing
//! changes at all).

use crate::config::{Config, ListenerConfig, ListenerKind};

/// One step of a reload.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The listener is removed or changed: close it (before a changed one starts again).
    StopListener(String),
    /// Unchanged TLS listener: re-read certificate, key and CA for new connections.
    ReloadTls(String),
    /// A new or changed listener.
    StartListener(Box<ListenerConfig>),
    /// Hand the jails (and ban policies) to the pipeline and the manager.
    Jails,
}

/// The steps from `old` to `new`, in the order to apply them; or the sections whose change
/// needs a restart.
pub fn plan(old: &Config, new: &Config) -> Result<Vec<Change>, Vec<&'static str>> {
    let mut restart = Vec::new();
    if new.ban != old.ban {
        restart.push("[ban]");
    }
    if new.targets != old.targets {
        restart.push("[target.*]");
    }
    if new.control_socket != old.control_socket {
        restart.push("control.socket");
    }
    if new.metrics_listen != old.metrics_listen {
        restart.push("metrics.listen");
    }
    if new.state_dir != old.state_dir {
        restart.push("state.dir");
    }
    if new.cluster != old.cluster {
        restart.push("[cluster]");
    }
    if !restart.is_empty() {
        return Err(restart);
    }
    let mut changes: Vec<Change> = old
        .listeners
        .iter()
        .filter(|l| !new.listeners.contains(l))
        .map(|l| Change::StopListener(l.label.clone()))
        .collect();
    changes.extend(
        old.listeners
            .iter()
            .filter(|l| new.listeners.contains(l))
            .filter(|l| matches!(&l.kind, ListenerKind::Tcp { tls: Some(_), .. }))
            .map(|l| Change::ReloadTls(l.label.clone())),
    );
    changes.extend(
        new.listeners
            .iter()
            .filter(|l| !old.listeners.contains(l))
            .map(|l| Change::StartListener(Box::new(l.clone()))),
    );
    changes.push(Change::Jails);
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A config from TOML text (written to a temporary directory, as `check` reads it).
    fn config(main: &str, jail: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("syslog2ban.toml"), main).unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(dir.path().join("conf.d/j.toml"), jail).unwrap();
        crate::config::load(Path::new(dir.path())).unwrap()
    }

    const TCP: &str = "[[listen]]\ntype = \"tcp\"\naddress = \"127.0.0.1:5514\"\n";
    const UDP: &str = "[[listen]]\ntype = \"udp\"\naddress = \"127.0.0.1:5514\"\n";
    const JAIL: &str = "[jail.sshd]\nenabled = true\nprograms = [\"sshd\"]\nfailregex = ['^x <HOST>$']\nmaxretry = 3\n";

    #[test]
    fn plans_are_table_tested() {
        let base = config(&format!("{TCP}{UDP}"), JAIL);
        let label = |l: &str| l.to_string();
        type Case = (&'static str, Config, Result<Vec<Change>, Vec<&'static str>>);
        let cases: Vec<Case> = vec![
            ("nothing changed", config(&format!("{TCP}{UDP}"), JAIL), Ok(vec![Change::Jails])),
            (
                "a jail changed: listeners untouched",
                config(&format!("{TCP}{UDP}"), &JAIL.replace("maxretry = 3", "maxretry = 5")),
                Ok(vec![Change::Jails]),
            ),
            (
                "a listener removed",
                config(TCP, JAIL),
                Ok(vec![Change::StopListener(label("udp:127.0.0.1:5514")), Change::Jails]),
            ),
            (
                "a listener changed: stopped, then started",
                config(&format!("{TCP}idle_timeout = \"1m\"\n{UDP}"), JAIL),
                Ok(vec![
                    Change::StopListener(label("tcp:127.0.0.1:5514")),
                    Change::StartListener(Box::new(
                        config(&format!("{TCP}idle_timeout = \"1m\"\n"), JAIL).listeners[0].clone(),
                    )),
                    Change::Jails,
                ]),
            ),
            (
                "[ban] and [metrics] need a restart",
                config(
                    &format!("{TCP}{UDP}[ban]\ntable = \"other\"\n[metrics]\nlisten = \"127.0.0.1:9617\"\n"),
                    JAIL,
                ),
                Err(vec!["[ban]", "metrics.listen"]),
            ),
        ];
        for (what, new, expected) in cases {
            assert_eq!(plan(&base, &new), expected, "{what}");
        }
    }
}
