//! Control answers: what the daemon says to `status`, `banned`, `ban`, `unban`, `verify` and a
//! jail's status, built by asking the stage that owns each answer (the ban manager for bans,
//! the counters for traffic, the kernel's table for `verify`).
//!
//! Owns only the shaping of answers; it holds no ban state and changes nothing but through
//! the manager's requests.

use super::*;
use crate::config::PlacementRule;
use crate::control::protocol::{
    ClusterReport, FeedReport, NotifierReport, PlaceCheck, VerifyReport,
};
use crate::target::Target;

impl Running {
    /// Asks the ban manager; None when it is gone (stopping).
    pub(super) async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> ban::Request,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.manager.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    pub(super) async fn answer(&mut self, request: Request) -> Response {
        let stopping = || Response::Error {
            message: "the daemon is stopping".into(),
        };
        match request {
            Request::Status => match self.ask(|reply| ban::Request::List { reply }).await {
                Some(bans) => Response::Status(self.status(&bans)),
                None => stopping(),
            },
            Request::JailStatus { jail } => {
                if !self.config.jails.iter().any(|j| j.name.as_str() == jail) {
                    return Response::Error {
                        message: self.unknown_jail(&jail),
                    };
                }
                match self.ask(|reply| ban::Request::List { reply }).await {
                    Some(bans) => Response::Jail(self.jail_report(&jail, &bans)),
                    None => stopping(),
                }
            }
            Request::Banned => match self.ask(|reply| ban::Request::List { reply }).await {
                Some(bans) => Response::Banned { bans },
                None => stopping(),
            },
            Request::Ban {
                jail,
                address,
                force,
                place,
                origin,
            } => {
                let address = match parse_address(&address) {
                    Ok(a) => a,
                    Err(message) => return Response::Error { message },
                };
                let Ok(name) = JailName::new(&jail) else {
                    return Response::Error {
                        message: self.unknown_jail(&jail),
                    };
                };
                let (placement, origin) =
                    match self.manual_placement(&name, address, force, &place, origin) {
                        Ok(p) => p,
                        Err(message) => return Response::Error { message },
                    };
                match self
                    .ask(|reply| ban::Request::Ban {
                        jail: name,
                        address,
                        placement,
                        origin,
                        reply,
                    })
                    .await
                {
                    Some(Ok(true)) => Response::Done {
                        message: format!("{address} banned in jail {jail}"),
                    },
                    Some(Ok(false)) => Response::Done {
                        message: format!("{address} was already banned in jail {jail}"),
                    },
                    Some(Err(_)) => Response::Error {
                        message: self.unknown_jail(&jail),
                    },
                    None => stopping(),
                }
            }
            Request::Unban { address } => {
                let address = match parse_address(&address) {
                    Ok(a) => a,
                    Err(message) => return Response::Error { message },
                };
                match self
                    .ask(|reply| ban::Request::Unban { address, reply })
                    .await
                {
                    Some(jails) if jails.is_empty() => Response::Error {
                        message: format!("{address} is not banned"),
                    },
                    Some(jails) => Response::Done {
                        message: format!(
                            "{address} unbanned (was banned in {})",
                            jails
                                .iter()
                                .map(|j| j.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    },
                    None => stopping(),
                }
            }
            Request::UnbanAll => match self.ask(|reply| ban::Request::UnbanAll { reply }).await {
                Some(n) => Response::Done {
                    message: format!("{n} address(es) unbanned"),
                },
                None => stopping(),
            },
            Request::Get { jail, key } => {
                match self.config.jails.iter().find(|j| j.name.as_str() == jail) {
                    None => Response::Error {
                        message: self.unknown_jail(&jail),
                    },
                    Some(j) => match settings::get(j, &key) {
                        Ok(value) => Response::Setting { jail, key, value },
                        Err(message) => Response::Error { message },
                    },
                }
            }
            Request::Set {
                jail,
                key,
                value,
                persist,
            } => match self.set(&jail, &key, &value, persist).await {
                Ok(value) => Response::Setting { jail, key, value },
                Err(message) => Response::Error { message },
            },
            Request::Reload => match self.reload().await {
                Ok(message) => {
                    info!("{message}");
                    Response::Done { message }
                }
                Err(message) => {
                    error!("Reload refused, running config kept: {message}");
                    Response::Error {
                        message: format!("reload refused, running config kept:\n{message}"),
                    }
                }
            },
            Request::Verify { address } => {
                let only = match address.as_deref().map(parse_address).transpose() {
                    Ok(only) => only,
                    Err(message) => return Response::Error { message },
                };
                match self.ask(|reply| ban::Request::List { reply }).await {
                    Some(bans) => {
                        let bans = bans
                            .into_iter()
                            .filter(|b| only.is_none_or(|a| b.address == a))
                            .collect();
                        Response::Verified {
                            bans: self.verify(bans).await,
                        }
                    }
                    None => stopping(),
                }
            }
        }
    }

    /// Checks each ban where it was sent: the local table is read now; a remote target is
    /// reported as its last reconcile left it.
    async fn verify(&self, bans: Vec<BanInfo>) -> Vec<VerifyReport> {
        let dry = self.options.dry_run || self.config.ban.backend == Backend::Log;
        let ban = &self.config.ban;
        let (local, held_in) = match &ban.backend {
            _ if dry => (Err("dry run: bans are logged, not applied".to_string()), ""),
            Backend::Ipset(tools) => (
                enforce::ipset::Ipset::new(tools.clone(), &ban.table, ban.hooks)
                    .list()
                    .await
                    .map_err(|e| format!("cannot read the ipset sets: {e}")),
                "the ipset set",
            ),
            Backend::HostsDeny(file) => (
                enforce::hosts_deny::HostsDeny::new(file.path.clone(), file.daemons.clone())
                    .entries()
                    .await
                    .map_err(|e| format!("cannot read the file: {e}")),
                "the hosts.deny file",
            ),
            Backend::Command(_) => (
                Err(
                    "the command backend cannot be read back; the ban command's own records tell"
                        .to_string(),
                ),
                "",
            ),
            Backend::Nftables | Backend::Log => (
                enforce::nft::list(&ban.nft, &ban.table)
                    .await
                    .map_err(|e| format!("cannot read the table: {e}"))
                    .and_then(|json| {
                        enforce::reconcile::parse_listing(&json).map_err(|e| e.to_string())
                    }),
                "the kernel set",
            ),
        };
        bans.into_iter()
            .map(|ban| VerifyReport {
                address: ban.address.to_string(),
                jail: ban.jail,
                places: ban
                    .places
                    .iter()
                    .map(|place| match place.as_str() {
                        "local" => match &local {
                            Ok(actual) => match actual
                                .iter()
                                .filter(|(e, _)| e.target == ban.address)
                                .map(|(_, left)| *left)
                                .max()
                            {
                                Some(left) => PlaceCheck {
                                    place: place.clone(),
                                    enforced: Some(true),
                                    detail: match left {
                                        Some(left) => {
                                            format!("in {held_in}, {} s left", left.as_secs())
                                        }
                                        None => format!("in {held_in}, no timeout there"),
                                    },
                                },
                                None => PlaceCheck {
                                    place: place.clone(),
                                    enforced: Some(false),
                                    detail: format!(
                                        "MISSING from {held_in} (the next reconcile adds it)"
                                    ),
                                },
                            },
                            Err(why) => PlaceCheck {
                                place: place.clone(),
                                enforced: None,
                                detail: why.clone(),
                            },
                        },
                        remote => {
                            let m = self.metrics.target(remote);
                            let last = Metrics::get(&m.last_reconcile_unix);
                            let detail = match (Metrics::get(&m.connected) == 1, m.last_error()) {
                                (true, None) if last > 0 => {
                                    format!("connected; reconciled at unix time {last}")
                                }
                                (true, None) => "connected; not reconciled yet".into(),
                                (_, Some(e)) => format!("NOT CONFIRMED: {e}"),
                                (false, None) => "NOT CONFIRMED: not connected".into(),
                            };
                            PlaceCheck {
                                place: remote.to_string(),
                                enforced: None,
                                detail,
                            }
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// A manual ban's checks before the manager sees it: an address in the jail's `ignoreip`
    /// needs `force`; `place` (placement rules) must parse; and a placement that names the
    /// attacked host needs `origin` when there are targets to choose from, instead of the ban
    /// silently staying on this host. Returns the placement override and the origin.
    fn manual_placement(
        &self,
        jail: &JailName,
        address: Target,
        force: bool,
        place: &[String],
        origin: Option<String>,
    ) -> Result<(Option<Vec<PlacementRule>>, Option<String>), String> {
        let config = self.config.jails.iter().find(|j| &j.name == jail);
        if let Some(config) = config.filter(|_| !force) {
            let ignored = config
                .ignoreip
                .iter()
                .find(|net| net.contains(&address.addr()) || address.net().contains(*net));
            if let Some(net) = ignored {
                return Err(format!(
                    "{address} is in jail {jail}'s ignoreip ({net}); ban it anyway with --force"
                ));
            }
        }
        let placement = if place.is_empty() {
            None
        } else {
            let rules = place
                .iter()
                .map(|text| PlacementRule::parse(text, &self.config.targets))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("--place: {e}"))?;
            Some(rules)
        };
        let rules = match (&placement, config) {
            (Some(rules), _) => rules.as_slice(),
            (None, Some(config)) => config.placement.as_slice(),
            (None, None) => &[],
        };
        let by_origin = rules.contains(&PlacementRule::Origin);
        if by_origin && origin.is_none() && !self.config.targets.is_empty() {
            return Err(format!(
                "jail {jail} places bans on the attacked host (placement \"origin\"): name it with \
                 --origin HOST, or choose where with --place local|all|group:NAME|target:NAME"
            ));
        }
        Ok((placement, origin))
    }

    pub(super) fn unknown_jail(&self, jail: &str) -> String {
        let known: Vec<&str> = self.config.jails.iter().map(|j| j.name.as_str()).collect();
        format!(
            "unknown jail '{jail}' (enabled jails: {})",
            known.join(", ")
        )
    }

    fn jail_report(&self, jail: &str, bans: &[BanInfo]) -> JailReport {
        let counters = self.metrics.jail(jail);
        let banned: Vec<String> = bans
            .iter()
            .filter(|b| b.jail == jail)
            .map(|b| b.address.to_string())
            .collect();
        JailReport {
            jail: jail.to_string(),
            programs: self
                .config
                .jails
                .iter()
                .find(|j| j.name.as_str() == jail)
                .map(|j| j.programs.clone())
                .unwrap_or_default(),
            currently_failed: Metrics::get(&counters.tracked),
            total_failed: Metrics::get(&counters.failures),
            currently_banned: banned.len() as u64,
            total_banned: Metrics::get(&counters.bans),
            banned,
        }
    }

    fn status(&self, bans: &[BanInfo]) -> StatusReport {
        let listeners = self
            .listeners
            .iter()
            .map(|(config, handle)| {
                let m = self.metrics.listener(&config.label);
                ListenerReport {
                    bound: handle.bound().map(|a| a.to_string()),
                    listener: config.label.clone(),
                    messages: Metrics::get(&m.messages),
                    oversize: Metrics::get(&m.oversize),
                    refused_connections: Metrics::get(&m.refused_connections),
                    refused_senders: Metrics::get(&m.refused_senders),
                }
            })
            .collect();
        let jails = self
            .config
            .jails
            .iter()
            .map(|j| self.jail_report(j.name.as_str(), bans))
            .collect();
        let dry = self.options.dry_run || self.config.ban.backend == Backend::Log;
        let store = &self.metrics.store;
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            listeners,
            jails,
            targets: self.target_reports(dry),
            store: Some(StoreReport {
                failing: Metrics::get(&store.failing) == 1,
                pending_writes: Metrics::get(&store.pending),
                lost_writes: Metrics::get(&store.lost),
                last_error: store.last_error.get(),
            }),
            stuck: self
                .supervisor
                .stuck(STUCK_AFTER)
                .into_iter()
                .map(|(stage, busy)| StuckStage {
                    stage: stage.to_string(),
                    busy_secs: busy.as_secs(),
                })
                .collect(),
            notifiers: self
                .metrics
                .notifiers()
                .iter()
                .map(|n| NotifierReport {
                    name: n.name.clone(),
                    sent: Metrics::get(&n.sent),
                    failed: Metrics::get(&n.failed),
                    dropped: Metrics::get(&n.dropped),
                    queued: Metrics::get(&n.queued),
                    last_error: n.last_error.get(),
                })
                .collect(),
            feeds: self
                .metrics
                .feeds()
                .iter()
                .map(|f| {
                    let last = Metrics::get(&f.last_ok_unix);
                    FeedReport {
                        name: f.name.clone(),
                        entries: Metrics::get(&f.entries),
                        fetches: Metrics::get(&f.fetches),
                        errors: Metrics::get(&f.errors),
                        last_ok_unix: (last > 0).then_some(last),
                        last_error: f.last_error.get(),
                    }
                })
                .collect(),
            cluster: self.config.cluster.as_ref().map(|c| {
                let m = &self.metrics.cluster;
                let now_ms = crate::clock::wall_now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                Box::new(ClusterReport {
                    node: c.node.to_string(),
                    // The sentinels first: they are asked first.
                    engine: c
                        .sentinel
                        .iter()
                        .flat_map(|s| {
                            s.urls
                                .iter()
                                .map(|url| format!("sentinel {url} (primary \"{}\")", s.master))
                        })
                        .chain(c.urls.iter().map(ToString::to_string))
                        .collect(),
                    degraded: m.degraded.load(std::sync::atomic::Ordering::Relaxed),
                    degraded_secs: m.degraded_ms(now_ms) / 1000,
                    buffered_failures: Metrics::get(&m.buffered_failures),
                    buffered_bans: Metrics::get(&m.buffered_bans),
                    buffer_dropped: Metrics::get(&m.buffer_dropped),
                    shared_offences: Metrics::get(&m.shared_offences),
                    published: Metrics::get(&m.published),
                    adopted: Metrics::get(&m.adopted),
                    unreadable_entries: Metrics::get(&m.unreadable_entries),
                    last_error: m.last_error.get(),
                    name_clash: m.name_clash.load(std::sync::atomic::Ordering::Relaxed),
                    peers: m.peers(),
                })
            }),
        }
    }

    fn target_reports(&self, dry: bool) -> Vec<TargetReport> {
        let local = self.metrics.target("local");
        let last = Metrics::get(&local.last_reconcile_unix);
        let mut reports = vec![TargetReport {
            target: "local".into(),
            backend: if dry {
                "log".into()
            } else {
                self.config.ban.backend.name().into()
            },
            table: match &self.config.ban.backend {
                _ if dry => None,
                Backend::HostsDeny(file) => Some(file.path.display().to_string()),
                Backend::Command(command) => Some(command.ban.program.display().to_string()),
                _ => Some(self.config.ban.table.to_string()),
            },
            batches: Metrics::get(&local.batches),
            netlink_batches: Metrics::get(&local.netlink_batches),
            errors: Metrics::get(&local.errors),
            remote: None,
            attested: (!dry).then(|| AttestReport {
                desired: Metrics::get(&local.desired),
                present: Metrics::get(&local.present),
                reconciles: Metrics::get(&local.reconciles),
                fixes: Metrics::get(&local.reconcile_fixes),
                last_reconcile_unix: (last > 0).then_some(last),
                last_error: local.last_error(),
                unheard_batches: Metrics::get(&local.unheard_batches),
                unheard_unsound: Metrics::get(&local.unheard_unsound),
            }),
        }];
        for t in &self.config.targets {
            let m = self.metrics.target(t.name.as_str());
            let last = Metrics::get(&m.last_reconcile_unix);
            reports.push(TargetReport {
                target: t.name.to_string(),
                backend: if self.options.dry_run {
                    "log".into()
                } else {
                    format!("ssh+{}", t.backend.name())
                },
                table: (!self.options.dry_run).then(|| {
                    t.table
                        .as_ref()
                        .unwrap_or(&self.config.ban.table)
                        .to_string()
                }),
                batches: Metrics::get(&m.batches),
                netlink_batches: 0,
                errors: Metrics::get(&m.errors),
                remote: Some(RemoteReport {
                    host: format!("{}@{}:{}", t.user, t.address, t.port),
                    connected: Metrics::get(&m.connected) == 1,
                    queued: Metrics::get(&m.queued),
                    last_error: m.last_error(),
                    last_reconcile_unix: (last > 0).then_some(last),
                    reconciles: Metrics::get(&m.reconciles),
                }),
                attested: None,
            });
        }
        reports
    }
}
