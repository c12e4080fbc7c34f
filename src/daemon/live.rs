//! Changes to the running daemon: a reload (the plan of `reload` applied, step by step),
//! `set JAIL KEY VALUE`, and the hand-over of jails to the pipeline and the ban manager
//! that both end with.
//!
//! Owns the order of those steps; what changes is `reload`'s call, the settings' grammar
//! `settings`'.

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::{log_fail2ban_filters, policies, reload, routes, settings, Running};
use crate::ban;
use crate::config::{self, Config};
use crate::fd_limit;
use crate::input;
use crate::pipeline::Update;
use crate::systemd;

impl Running {
    /// Hands `config`'s jails to the pipeline and their policies to the ban manager. The
    /// pipeline keeps the windows of jails that still exist; the manager keeps every ban (bans
    /// of removed jails run out as decided). Both acknowledge, so once this returns the jails
    /// are in effect for every later message.
    pub(super) async fn apply_jails(&mut self, config: &Config) -> Result<(), String> {
        let stopping = || "the daemon is stopping".to_string();
        let (jails_applied, jails_done) = oneshot::channel();
        self.pipeline
            .send(Update::Jails(config.jails.clone(), jails_applied))
            .await
            .map_err(|_| stopping())?;
        jails_done.await.map_err(|_| stopping())?;
        self.ask(|reply| ban::Request::Reconfigure {
            policies: policies(config),
            recidive: config.recidive.clone(),
            reply,
        })
        .await
        .ok_or_else(stopping)
    }

    /// `set JAIL KEY VALUE`: the jail's setting changes now, failure windows and bans kept;
    /// with `persist` it is also written to conf.d/zz-set.toml first (a file that cannot be
    /// written changes nothing). Answers the value now in effect.
    pub(super) async fn set(
        &mut self,
        jail: &str,
        key: &str,
        value: &str,
        persist: bool,
    ) -> Result<String, String> {
        let mut new = self.config.clone();
        let Some(target) = new.jails.iter_mut().find(|j| j.name.as_str() == jail) else {
            return Err(self.unknown_jail(jail));
        };
        settings::set(target, key, value)?;
        let now = settings::get(target, key)?;
        if persist {
            let path = self.options.config_path.clone();
            let (jail, key, value) = (jail.to_string(), key.to_string(), now.clone());
            let file =
                tokio::task::spawn_blocking(move || settings::persist(&path, &jail, &key, &value))
                    .await
                    .map_err(|e| format!("writing the setting failed: {e}"))??;
            info!(file = %file.display(), "Setting persisted");
        }
        self.apply_jails(&new).await?;
        info!(jail, key, value = %now, persisted = persist, "Jail setting changed");
        self.config = new;
        Ok(now)
    }

    /// Re-reads the config and applies what changed. On error nothing changes.
    pub(super) async fn reload(&mut self) -> Result<String, String> {
        // MONOTONIC_USEC lets Type=notify-reload (systemd 253+) match the reload to its SIGHUP.
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
        systemd::notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=Reloading"
        ));
        let result = self.reload_inner().await;
        systemd::notify("READY=1\nSTATUS=Ready");
        result
    }

    async fn reload_inner(&mut self) -> Result<String, String> {
        // Reading and compiling files blocks: not on an async worker.
        let path = self.options.config_path.clone();
        let mut new = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| format!("loading the config failed: {e}"))?
            .map_err(|e| e.to_string())?;
        fd_limit::fit_connections(&mut new.listeners, fd_limit::current());
        log_fail2ban_filters(&new.jails);
        let changes = reload::plan(&self.config, &new).map_err(|restart| {
            format!(
                "{} changed; these take effect only on restart",
                restart.join(", ")
            )
        })?;
        let notifiers_changed = new.notifiers != self.config.notifiers;
        if notifiers_changed {
            // A mail notifier's CA file is read: not on an async worker.
            let notifiers = new.notifiers.clone();
            tokio::task::spawn_blocking(move || crate::notify::check(&notifiers))
                .await
                .map_err(|e| format!("checking the notifiers failed: {e}"))??;
        }
        let (mut stopped, mut started, mut tls_reloaded) = (0, 0, 0);
        let mut failed = Vec::new();
        for change in changes {
            match change {
                reload::Change::StopListener(label) => {
                    if let Some(i) = self.listeners.iter().position(|(c, _)| c.label == label) {
                        self.listeners.remove(i).1.stop();
                        info!(listener = %label, "Listener stopped by reload");
                        stopped += 1;
                    }
                }
                // Unchanged TLS listeners keep their sockets and connections but re-read
                // their certificates (renewed files take effect for new connections).
                reload::Change::ReloadTls(label) => {
                    let Some((_, handle)) = self.listeners.iter().find(|(c, _)| c.label == label)
                    else {
                        continue;
                    };
                    match handle.reload_tls() {
                        Ok(_) => tls_reloaded += 1,
                        Err(e) => failed.push(format!(
                            "{label}: certificates not reloaded, old ones kept: {e}"
                        )),
                    }
                }
                reload::Change::StartListener(config) => {
                    // A changed listener on the same address needs the old socket closed first.
                    tokio::task::yield_now().await;
                    match input::start(&config, &self.input).await {
                        Ok(handle) => {
                            self.listeners.push((*config, handle));
                            started += 1;
                        }
                        Err(e) => {
                            warn!(error = %e, "Listener did not start on reload");
                            failed.push(e.to_string());
                        }
                    }
                }
                reload::Change::Jails => {}
            }
        }
        self.apply_jails(&new).await?;
        *self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = routes(&new);
        if notifiers_changed {
            crate::notify::announce(&new.notifiers);
            self.notifiers.send_replace(new.notifiers.clone());
        }
        // After the policies: a new feed's jail is known to the ban manager before it bans.
        if new.feeds != self.config.feeds {
            self.feeds.send_replace(new.feeds.clone());
        }
        let summary = format!(
            "Reloaded: {} listener(s) ({} stopped, {} started, {} TLS re-read), {} notifier(s){}, {} feed(s), {} jail(s): {}",
            self.listeners.len(),
            stopped,
            started,
            tls_reloaded,
            new.notifiers.len(),
            if notifiers_changed { " (changed)" } else { "" },
            new.feeds.len(),
            new.jails.len(),
            new.jails
                .iter()
                .map(|j| j.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.config = new;
        if failed.is_empty() {
            Ok(summary)
        } else {
            Err(format!("{summary}; but: {}", failed.join("; ")))
        }
    }
}
