use super::*;
use crate::config::{Increment, PlacementRule};
use crate::input::Origin;
use crate::jail::BanChange;

fn name(s: &str) -> JailName {
    JailName::new(s).unwrap()
}

fn policy(jail: &str, bantime: BanTime) -> JailPolicy {
    JailPolicy {
        name: name(jail),
        bantime,
        increment: None,
        placement: vec![PlacementRule::Local],
        kill_connections: false,
        ports: None,
    }
}

const MIN: Duration = Duration::from_secs(60);

fn state() -> BanState {
    let policies = vec![
        policy("sshd", BanTime::For(MIN)),
        policy("forever", BanTime::Permanent),
        policy("long", BanTime::For(10 * MIN)),
    ];
    BanState::new(
        policies,
        None,
        Duration::from_secs(86400),
        Arc::new(Metrics::default()),
    )
    .with_jitter(|| 0.0)
}

fn offence(jail: &str, at: Instant) -> Offence {
    Offence {
        jail: name(jail),
        target: addr(),
        origin: Origin::Local,
        origin_name: None,
        failures: 3,
        at,
        sample: "Failed password".into(),
        lines: Vec::new(),
    }
}

/// The reason a ban of `offence(jail, ..)` carries.
fn reason(jail: &str, bantime: Option<Duration>) -> Arc<BanReason> {
    Arc::new(BanReason {
        jail: name(jail),
        failures: 3,
        origin: Origin::Local.to_string(),
        bantime,
        kill_connections: false,
    })
}

fn addr() -> Target {
    "203.0.113.9".parse().unwrap()
}

fn commands(ops: &[StoreOp]) -> Vec<BanCommand> {
    ops.iter().flat_map(|op| op.commands().to_vec()).collect()
}

#[test]
fn offence_bans_until_bantime_then_expires() {
    let mut s = state();
    let now = Moment::now();
    let t = now.instant;
    let ops = s.offence(&offence("sshd", t), now);
    assert_eq!(
        commands(&ops),
        vec![BanCommand::Ban {
            place: Place::Local,
            address: addr(),
            expires: Some(t + MIN),
            decided: t,
            reason: reason("sshd", Some(MIN)),
            ports: None,
        }]
    );
    match &ops[0] {
        StoreOp::Ban(record, _) => {
            assert_eq!(record.expires, Some(now.wall + MIN));
            assert_eq!(record.jail, "sshd");
            assert_eq!(record.failures, 3);
        }
        other => panic!("{other:?}"),
    }
    assert!(s.is_banned(addr()));
    assert!(
        s.offence(&offence("sshd", t), now).is_empty(),
        "same jail twice is one ban"
    );
    assert_eq!(s.list(t)[0].remaining_secs, Some(60));
    assert!(s.expire(t + Duration::from_secs(59)).is_empty());
    let ended = s.expire(t + MIN);
    // The unban ends the element where the firewall has no timeout of its own.
    assert!(
        matches!(&ended[..], [StoreOp::End { commands, .. }]
            if commands == &[BanCommand::Unban { place: Place::Local, address: addr() }]),
        "{ended:?}"
    );
    assert!(!s.is_banned(addr()));
    assert_eq!(s.next_deadline(), None);
    assert_eq!(Metrics::get(&s.metrics.jail("sshd").banned), 0);
    assert_eq!(Metrics::get(&s.metrics.jail("sshd").unbans), 1);
}

#[test]
fn a_second_jail_only_extends_never_shortens() {
    let mut s = state();
    let now = Moment::now();
    let t = now.instant;
    assert_eq!(commands(&s.offence(&offence("long", t), now)).len(), 1);
    // sshd's 60 s ban ends before long's 600 s one: stored, but the firewall keeps the longer.
    let ops = s.offence(&offence("sshd", t), now);
    assert_eq!(ops.len(), 1);
    assert!(commands(&ops).is_empty());
    // sshd's hold ends, long's still covers the place: no unban goes out.
    assert!(commands(&s.expire(t + Duration::from_secs(61))).is_empty());
    assert!(s.is_banned(addr()));
    assert_eq!(
        commands(&s.offence(&offence("forever", t), now)),
        vec![BanCommand::Ban {
            place: Place::Local,
            address: addr(),
            expires: None,
            decided: t,
            // The permanent hold is the one the firewall's element now stands for.
            reason: reason("forever", None),
            ports: None,
        }]
    );
    s.expire(t + Duration::from_secs(10_000));
    assert!(s.is_banned(addr()));
    assert_eq!(s.list(t)[0].remaining_secs, None);
}

#[test]
fn held_by_names_only_the_holds_of_jails_with_the_prefix() {
    let mut s = state();
    let now = Moment::now();
    let other: Target = "198.51.100.77".parse().unwrap();
    s.manual_ban(&name("long"), addr(), None, None, now)
        .unwrap();
    s.manual_ban(&name("sshd"), addr(), None, None, now)
        .unwrap();
    s.manual_ban(&name("long"), other, None, None, now).unwrap();
    let mut held = s.held_by("lo");
    held.sort();
    assert_eq!(held, vec![(name("long"), other), (name("long"), addr())]);
    assert!(s.held_by("feed-").is_empty());
}

#[test]
fn manual_ban_and_unban() {
    let feedback = crate::jail::BanFeedback::default();
    let mut s = state().with_feedback(feedback.clone());
    let now = Moment::now();
    assert_eq!(
        s.manual_ban(&name("nope"), addr(), None, None, now)
            .unwrap_err(),
        BanError::UnknownJail("nope".into())
    );
    let (new, ops) = s
        .manual_ban(&name("sshd"), addr(), None, None, now)
        .unwrap();
    assert!(new && ops.len() == 1);
    assert_eq!(s.list(now.instant)[0].origin, "manual");
    let (new, ops) = s
        .manual_ban(&name("sshd"), addr(), None, None, now)
        .unwrap();
    assert!(!new && ops.is_empty());
    s.manual_ban(&name("long"), addr(), None, None, now)
        .unwrap();
    let ip = addr().addr();
    let banned = |jail: &str| BanChange::Banned {
        jail: name(jail),
        address: ip,
    };
    let lifted = |jail: &str| BanChange::Lifted {
        jail: name(jail),
        address: ip,
    };
    assert_eq!(
        feedback.take().map(|n| n.changes),
        Some(vec![banned("sshd"), banned("long")]),
        "the jails hear of each ban made, once"
    );
    let (mut jails, ops) = s.unban(addr());
    let mut ended = feedback.take().map(|n| n.changes).unwrap_or_default();
    ended.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        ended,
        [lifted("long"), lifted("sshd")],
        "each ended hold tells its jail"
    );
    assert_eq!(feedback.take(), None, "nothing new");
    jails.sort();
    assert_eq!(jails, vec![name("long"), name("sshd")]);
    assert_eq!(ops.len(), 2, "both rows end");
    assert_eq!(
        commands(&ops),
        vec![BanCommand::Unban {
            place: Place::Local,
            address: addr()
        }],
        "one firewall removal"
    );
    assert!(!s.is_banned(addr()));
    assert_eq!(
        s.next_deadline(),
        None,
        "deadlines of unbanned holds are gone"
    );
    assert!(s.unban(addr()).0.is_empty());
}

#[test]
fn unban_all_frees_everything() {
    let mut s = state();
    let now = Moment::now();
    for i in 1..=3u8 {
        s.manual_ban(
            &name("forever"),
            Target::from(std::net::IpAddr::from([198, 51, 100, i])),
            None,
            None,
            now,
        )
        .unwrap();
    }
    let (freed, ops) = s.unban_all();
    assert_eq!(freed, 3);
    assert_eq!(commands(&ops).len(), 3);
    assert_eq!(s.banned_count(), 0);
    assert_eq!(Metrics::get(&s.metrics.active_bans), 0);
}

#[test]
fn reconfigure_keeps_bans_of_removed_jails_until_they_expire() {
    let mut s = state();
    let now = Moment::now();
    s.offence(&offence("sshd", now.instant), now);
    s.reconfigure(vec![policy("long", BanTime::For(10 * MIN))], None);
    assert!(s.is_banned(addr()));
    assert!(
        s.offence(&offence("sshd", now.instant), now).is_empty(),
        "sshd no longer exists"
    );
    s.expire(now.instant + MIN);
    assert!(!s.is_banned(addr()));
}

#[test]
fn increment_grows_with_earlier_bans_in_the_same_jail_or_all_jails() {
    let inc = |overalljails| Increment {
        factor: 1.0,
        multipliers: vec![],
        maxtime: Duration::from_secs(3 * 3600),
        rndtime: Duration::ZERO,
        overalljails,
    };
    for overall in [false, true] {
        let policies = vec![
            JailPolicy {
                name: name("sshd"),
                bantime: BanTime::For(Duration::from_secs(3600)),
                increment: Some(inc(overall)),
                placement: vec![PlacementRule::Local],
                kill_connections: false,
                ports: None,
            },
            policy("postfix", BanTime::For(MIN)),
        ];
        let mut s = BanState::new(
            policies,
            None,
            Duration::from_secs(7 * 86400),
            Arc::new(Metrics::default()),
        )
        .with_jitter(|| 0.0);
        let start = Moment::now();
        let mut lengths = Vec::new();
        // A postfix ban first: it counts only with overalljails.
        s.offence(&offence("postfix", start.instant), start);
        for round in 0..4u64 {
            let now = start.at(start.instant + Duration::from_secs(round * 20_000));
            s.expire(now.instant);
            let ops = s.offence(&offence("sshd", now.instant), now);
            match &ops[0] {
                StoreOp::Ban(r, _) => lengths.push(
                    r.expires
                        .unwrap()
                        .duration_since(r.started)
                        .unwrap()
                        .as_secs(),
                ),
                other => panic!("{other:?}"),
            }
        }
        if overall {
            // 1 earlier ban (postfix) before the first sshd one: 2h, 3h (cap), 3h, 3h.
            assert_eq!(lengths, vec![7200, 10800, 10800, 10800]);
        } else {
            assert_eq!(lengths, vec![3600, 7200, 10800, 10800]);
        }
    }
}

#[test]
fn recidive_bans_after_n_bans_in_any_jail_and_survives_restore() {
    let recidive = RecidiveConfig {
        maxretry: 3,
        findtime: Duration::from_secs(86400),
        bantime: BanTime::For(Duration::from_secs(7 * 86400)),
        placement: vec![PlacementRule::Local],
        notify: Vec::new(),
    };
    let policies = vec![
        policy("sshd", BanTime::For(MIN)),
        policy("postfix", BanTime::For(MIN)),
        policy("dovecot", BanTime::For(MIN)),
    ];
    let mut s = BanState::new(
        policies.clone(),
        Some(recidive.clone()),
        Duration::from_secs(86400),
        Arc::new(Metrics::default()),
    );
    let start = Moment::now();
    let mut stored = Vec::new();
    for (i, jail) in ["sshd", "postfix"].iter().enumerate() {
        let now = start.at(start.instant + Duration::from_secs(i as u64 * 120));
        stored.extend(s.offence(&offence(jail, now.instant), now));
    }
    assert!(!s.holds("recidive", addr()));
    // A restart in between: history comes back from the store.
    let history: Vec<(Target, String, SystemTime)> = stored
        .iter()
        .filter_map(|op| match op {
            StoreOp::Ban(r, _) => Some((r.address, r.jail.clone(), r.started)),
            _ => None,
        })
        .collect();
    let mut s = BanState::new(
        policies,
        Some(recidive),
        Duration::from_secs(86400),
        Arc::new(Metrics::default()),
    );
    let later = start.at(start.instant + Duration::from_secs(600));
    s.restore(Vec::new(), history, later);
    let ops = s.offence(&offence("dovecot", later.instant), later);
    assert!(
        s.holds("recidive", addr()),
        "third ban in a third jail earns recidive"
    );
    match &ops[1] {
        StoreOp::Ban(r, commands) if matches!(commands[..], [BanCommand::Ban { .. }]) => {
            let BanCommand::Ban { expires, .. } = &commands[0] else {
                unreachable!()
            };
            assert_eq!(r.jail, "recidive");
            assert_eq!(
                *expires,
                Some(later.instant + Duration::from_secs(7 * 86400))
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn restore_puts_back_active_bans_with_remaining_time() {
    let mut s = state();
    let now = Moment::now();
    let record = |address: &str, jail: &str, left: Option<u64>| BanRecord {
        address: address.parse().unwrap(),
        jail: jail.into(),
        origin: "198.51.100.10".into(),
        started: now.wall - Duration::from_secs(10),
        expires: left.map(|l| now.wall + Duration::from_secs(l)),
        failures: 3,
        sample: String::new(),
        lines: Vec::new(),
        decided_by: None,
        more_origins: Vec::new(),
        placement: None,
    };
    let mut commands = s.restore(
        vec![
            record("203.0.113.1", "sshd", Some(50)),
            record("203.0.113.1", "long", Some(500)),
            record("2001:db8::2", "forever", None),
            record("203.0.113.3", "gone-jail", Some(5)),
        ],
        Vec::new(),
        now,
    );
    commands.sort_by_key(|c| match c {
        BanCommand::Ban { address, .. } | BanCommand::Unban { address, .. } => *address,
    });
    assert_eq!(commands.len(), 3, "one command per address");
    assert_eq!(
        commands[0],
        BanCommand::Ban {
            place: Place::Local,
            address: "203.0.113.1".parse().unwrap(),
            expires: Some(now.instant + Duration::from_secs(500)),
            decided: now.instant,
            // The longest hold names the element: "long", restored with its stored bantime.
            reason: Arc::new(BanReason {
                jail: name("long"),
                failures: 3,
                origin: "198.51.100.10".into(),
                bantime: Some(Duration::from_secs(510)),
                kill_connections: false,
            }),
            ports: None,
        }
    );
    assert!(matches!(commands[2], BanCommand::Ban { expires: None, .. }));
    assert_eq!(s.banned_count(), 3);
    s.expire(now.instant + Duration::from_secs(60));
    assert!(s.holds("long", "203.0.113.1".parse().unwrap()));
    assert!(!s.holds("sshd", "203.0.113.1".parse().unwrap()));
    assert!(!s.is_banned("203.0.113.3".parse().unwrap()));
}

fn remote(name: &str) -> Place {
    Place::Remote(crate::config::TargetName::new(name).unwrap())
}

fn fleet_state() -> BanState {
    let config =
        |name: &str, origin: &str| crate::config::TargetConfig::for_test(name, &[origin], &["web"]);
    let mut at_origin = policy("sshd", BanTime::For(MIN));
    at_origin.placement = vec![PlacementRule::Origin];
    let mut everywhere = policy("long", BanTime::For(10 * MIN));
    everywhere.placement = vec![PlacementRule::All, PlacementRule::Local];
    BanState::new(
        vec![at_origin, everywhere],
        None,
        Duration::from_secs(86400),
        Arc::new(Metrics::default()),
    )
    .with_fleet(Fleet::new(&[
        config("a", "198.51.100.10"),
        config("b", "198.51.100.20"),
    ]))
    .with_jitter(|| 0.0)
}

fn offence_from(jail: &str, origin: &str, at: Instant) -> Offence {
    Offence {
        origin: Origin::Peer(std::net::SocketAddr::new(origin.parse().unwrap(), 514)),
        ..offence(jail, at)
    }
}

fn places_of(commands: &[BanCommand]) -> Vec<Place> {
    commands
        .iter()
        .map(|c| match c {
            BanCommand::Ban { place, .. } | BanCommand::Unban { place, .. } => place.clone(),
        })
        .collect()
}

#[test]
fn placement_sends_one_command_per_firewall_and_unban_follows_it() {
    let mut s = fleet_state();
    let now = Moment::now();
    let t = now.instant;
    let ops = s.offence(&offence_from("sshd", "198.51.100.10", t), now);
    assert_eq!(places_of(&commands(&ops)), vec![remote("a")]);
    // A longer ban everywhere: every place gets it (a's deadline moves later too).
    let ops = s.offence(&offence_from("long", "198.51.100.20", t), now);
    assert_eq!(
        places_of(&commands(&ops)),
        vec![Place::Local, remote("a"), remote("b")]
    );
    let (_, ops) = s.unban(addr());
    let mut unbans = places_of(&commands(&ops));
    unbans.sort();
    assert_eq!(unbans, vec![Place::Local, remote("a"), remote("b")]);
}

#[test]
fn restore_recomputes_places_from_the_stored_origin() {
    let mut s = fleet_state();
    let now = Moment::now();
    let record = BanRecord {
        address: addr(),
        jail: "sshd".into(),
        origin: "198.51.100.20".into(),
        started: now.wall,
        expires: Some(now.wall + MIN),
        failures: 3,
        sample: String::new(),
        lines: Vec::new(),
        decided_by: None,
        more_origins: Vec::new(),
        placement: None,
    };
    let commands = s.restore(vec![record], Vec::new(), now);
    assert_eq!(places_of(&commands), vec![remote("b")]);
}

#[test]
fn a_manual_ban_goes_where_it_is_told_or_to_the_origin_it_names() {
    let now = Moment::now();
    // The jail places at the origin: a named origin resolves to its target.
    let mut s = fleet_state();
    let (new, ops) = s
        .manual_ban(
            &name("sshd"),
            addr(),
            None,
            Some("198.51.100.20".into()),
            now,
        )
        .unwrap();
    assert!(new);
    assert_eq!(places_of(&commands(&ops)), vec![remote("b")]);
    // --place overrides the jail's placement.
    let mut s = fleet_state();
    let only_a = vec![PlacementRule::Target(
        crate::config::TargetName::new("a").unwrap(),
    )];
    let (_, ops) = s
        .manual_ban(&name("sshd"), addr(), Some(only_a), None, now)
        .unwrap();
    assert_eq!(places_of(&commands(&ops)), vec![remote("a")]);
    let mut s = fleet_state();
    let (_, ops) = s
        .manual_ban(
            &name("sshd"),
            addr(),
            Some(vec![PlacementRule::All]),
            None,
            now,
        )
        .unwrap();
    assert_eq!(places_of(&commands(&ops)), vec![remote("a"), remote("b")]);
}

#[test]
fn a_manual_ban_told_where_to_go_is_restored_there() {
    let now = Moment::now();
    let mut s = fleet_state();
    let only_b = vec![PlacementRule::Target(
        crate::config::TargetName::new("b").unwrap(),
    )];
    let (_, ops) = s
        .manual_ban(&name("sshd"), addr(), Some(only_b.clone()), None, now)
        .unwrap();
    let record = ban_record(&ops).clone();
    assert_eq!(record.placement, Some(only_b));
    // Not where the jail's placement would put a ban from "manual" (no target: here).
    let mut restored = fleet_state();
    let put_back = restored.restore(vec![record.clone()], Vec::new(), now);
    assert_eq!(places_of(&put_back), vec![remote("b")]);
    // Another collector adopting it places it there too.
    let shared = crate::cluster::SharedBan {
        origin: record.origin,
        placement: record.placement,
        ..from_b(addr(), false, now)
    };
    let ops: Vec<StoreOp> = fleet_state().adopt(shared, "c", now).into_iter().collect();
    assert_eq!(places_of(&commands(&ops)), vec![remote("b")]);
}

#[test]
fn a_ban_told_where_to_go_says_so_when_republished_and_after_an_offence_widens_it() {
    let now = Moment::now();
    let mut s = fleet_state();
    let only_b = vec![PlacementRule::Target(
        crate::config::TargetName::new("b").unwrap(),
    )];
    s.manual_ban(&name("sshd"), addr(), Some(only_b.clone()), None, now)
        .unwrap();
    // An engine that lost its data gets it back with where it was told to go.
    let republished = s.shared_bans("a", now);
    assert_eq!(republished.len(), 1);
    assert_eq!(republished[0].placement, Some(only_b.clone()));
    // The attacker offends on a: the hold widens there, and what is stored still has b.
    let ops = s.offence(&offence_from("sshd", "198.51.100.10", now.instant), now);
    assert_eq!(places_of(&commands(&ops)), vec![remote("a")]);
    let record = ban_record(&ops).clone();
    assert_eq!(
        record.placement,
        Some(vec![PlacementRule::Origin, only_b[0].clone()])
    );
    let put_back = fleet_state().restore(vec![record], Vec::new(), now);
    assert_eq!(places_of(&put_back), vec![remote("a"), remote("b")]);
    assert_eq!(
        s.shared_bans("a", now)[0].placement,
        Some(vec![PlacementRule::Origin, only_b[0].clone()])
    );
    // Once it ends, a new ban of the address is placed by the jail alone.
    s.unban(addr());
    let ops = s.offence(&offence_from("sshd", "198.51.100.10", now.instant), now);
    assert_eq!(ban_record(&ops).placement, None);
    assert_eq!(s.shared_bans("a", now)[0].placement, None);
}

#[test]
fn ports_are_the_union_of_the_holds_and_every_port_wins_until_it_ends() {
    let port = |number| crate::target::Port {
        protocol: crate::target::Protocol::Tcp,
        number,
    };
    let ftp = JailPolicy {
        ports: Some(Arc::new([port(21)].into())),
        ..policy("ftp", BanTime::For(10 * MIN))
    };
    let ssh = JailPolicy {
        ports: Some(Arc::new([port(22)].into())),
        ..policy("ssh", BanTime::For(MIN))
    };
    let mut s = BanState::new(
        vec![ftp, ssh, policy("all", BanTime::For(2 * MIN))],
        None,
        Duration::from_secs(86400),
        Arc::new(Metrics::default()),
    )
    .with_jitter(|| 0.0);
    let now = Moment::now();
    let t = now.instant;
    let ports_of = |ops: &[StoreOp]| match commands(ops).as_slice() {
        [BanCommand::Ban { ports, .. }] => ports.clone(),
        other => panic!("{other:?}"),
    };
    let set = |list: &[u16]| Some(Arc::new(list.iter().map(|n| port(*n)).collect()));
    assert_eq!(ports_of(&s.offence(&offence("ftp", t), now)), set(&[21]));
    // A shorter ban on another port widens what the firewall holds, though no deadline moves.
    assert_eq!(
        ports_of(&s.offence(&offence("ssh", t), now)),
        set(&[21, 22])
    );
    assert_eq!(ports_of(&s.offence(&offence("all", t), now)), None);
    // ssh ends: every port is still banned by "all"; nothing to tell.
    assert!(commands(&s.expire(t + MIN)).is_empty());
    // "all" ends: the firewall narrows to ftp's port, until ftp's own end.
    let narrowed = s.expire(t + 2 * MIN);
    assert_eq!(ports_of(&narrowed), set(&[21]));
    assert!(matches!(
        commands(&s.expire(t + 10 * MIN)).as_slice(),
        [BanCommand::Unban { .. }]
    ));
}

#[test]
fn lifting_one_jails_hold_keeps_the_others_and_shortens_the_firewalls_deadline() {
    let mut s = state();
    let now = Moment::now();
    let t = now.instant;
    s.offence(&offence("sshd", t), now);
    s.offence(&offence("forever", t), now);
    let ops = s.lift(addr(), &name("forever"), t);
    // sshd's minute still holds the address: the firewall gets that deadline back.
    assert!(
        matches!(commands(&ops).as_slice(), [BanCommand::Ban { expires, .. }] if *expires == Some(t + MIN)),
        "{ops:?}"
    );
    assert!(s.is_banned(addr()));
    assert!(
        s.lift(addr(), &name("forever"), t).is_empty(),
        "nothing left to lift"
    );
    let ops = s.lift(addr(), &name("sshd"), t);
    assert!(matches!(
        commands(&ops).as_slice(),
        [BanCommand::Unban { .. }]
    ));
    assert!(!s.is_banned(addr()));
    // The deadline went with the hold: nothing expires later.
    assert!(s.expire(t + 2 * MIN).is_empty());
}

/// Collector b's sshd ban of `address` for a minute from `now`, as its stream entry reads.
fn from_b(address: Target, republished: bool, now: Moment) -> crate::cluster::SharedBan {
    crate::cluster::SharedBan {
        node: "b".into(),
        jail: "sshd".into(),
        address,
        failures: 3,
        origin: "web1".into(),
        started: now.wall,
        expires: Some(now.wall + MIN),
        sample: String::new(),
        republished,
        decided_by: None,
        more_origins: Vec::new(),
        placement: None,
    }
}

#[test]
fn a_ban_decided_here_and_by_another_collector_is_counted_and_announced_by_one() {
    let mut s = state();
    let now = Moment::now();
    let doubles = |s: &BanState| Metrics::get(&s.metrics().cluster.double_decisions);
    let shared = |address: Target, republished: bool| from_b(address, republished, now);
    s.offence(&offence("sshd", now.instant), now);
    // b's ban of the same attacker arrives at a: both decided it. a's name sorts first: a
    // announces it, nothing changes (b, which yields, counts the double). Read again, still
    // nothing.
    assert!(s.adopt(shared(addr(), false), "a", now).is_none());
    assert!(s.adopt(shared(addr(), false), "a", now).is_none());
    assert_eq!(doubles(&s), 0);
    // Adopted first, then the same from b again: not decided here.
    let other: Target = "203.0.113.10".parse().unwrap();
    assert!(s.adopt(shared(other, false), "a", now).is_some());
    assert!(s.adopt(shared(other, false), "a", now).is_none());
    // A republish (an engine that lost its data) carries this collector's own bans too.
    let mine: Target = "203.0.113.11".parse().unwrap();
    s.manual_ban(&name("sshd"), mine, None, None, now).unwrap();
    assert!(s.adopt(shared(mine, true), "a", now).is_none());
    assert_eq!(doubles(&s), 0);

    // At c, whose name sorts after b's, the same double is b's to announce: c's ban stays,
    // recorded as b's, once.
    let mut s = state();
    s.offence(&offence("sshd", now.instant), now);
    let ops: Vec<StoreOp> = s
        .adopt(shared(addr(), false), "c", now)
        .into_iter()
        .collect();
    assert!(
        matches!(ops.as_slice(), [StoreOp::Yield { address, jail, to }]
            if *address == addr() && jail == "sshd" && to == "b"),
        "{ops:?}"
    );
    assert!(s.adopt(shared(addr(), false), "c", now).is_none());
    assert!(s.is_banned(addr()));
    assert_eq!(doubles(&s), 1);
}

/// A republish (the engine lost its data) by c names the collector that decided each ban:
/// b for the one c adopted, for the one c yielded to b, and for the one c restored as b's;
/// nobody else for c's own. A collector that adopts it records b's decision, not c's.
#[test]
fn a_republished_ban_names_the_collector_that_decided_it() {
    let now = Moment::now();
    let mut c = state();
    let adopted: Target = "203.0.113.20".parse().unwrap();
    let yielded: Target = "203.0.113.21".parse().unwrap();
    let restored: Target = "203.0.113.22".parse().unwrap();
    let own: Target = "203.0.113.23".parse().unwrap();
    assert!(c.adopt(from_b(adopted, false, now), "c", now).is_some());
    let decided = |target| Offence {
        target,
        ..offence("sshd", now.instant)
    };
    c.offence(&decided(yielded), now);
    assert!(c.yield_to(&name("sshd"), yielded, "b").is_some());
    let record = BanRecord {
        address: restored,
        decided_by: Some("b".into()),
        ..ban_record(&c.offence(&decided(restored), now)).clone()
    };
    let mut c_again = state();
    c_again.restore(vec![record], Vec::new(), now);
    c.offence(&decided(own), now);
    let deciders = |bans: &[crate::cluster::SharedBan]| {
        let mut found: Vec<(Target, Option<String>, String)> = bans
            .iter()
            .map(|b| (b.address, b.decided_by.clone(), b.node.clone()))
            .collect();
        found.sort();
        found
    };
    let b = Some("b".to_string());
    let republished = c.shared_bans("c", now);
    assert_eq!(
        deciders(&republished),
        vec![
            (adopted, b.clone(), "c".into()),
            (yielded, b.clone(), "c".into()),
            (restored, None, "c".into()),
            (own, None, "c".into()),
        ]
    );
    assert_eq!(
        deciders(&c_again.shared_bans("c", now)),
        vec![(restored, b.clone(), "c".into())]
    );
    // d, which held none of them, adopts them as b's and c's.
    let mut d = state();
    let mut recorded: Vec<(Target, Option<String>)> = republished
        .into_iter()
        .flat_map(|ban| d.adopt(ban, "d", now))
        .map(|op| match op {
            StoreOp::Ban(record, _) => (record.address, record.decided_by),
            other => panic!("{other:?}"),
        })
        .collect();
    recorded.sort();
    let c_name = Some("c".to_string());
    assert_eq!(
        recorded,
        vec![
            (adopted, b.clone()),
            (yielded, b.clone()),
            (restored, c_name.clone()),
            (own, c_name),
        ]
    );
}

/// Its own earlier ban, read back by collector b without a state of its own: held again, as
/// decided under its name (announced before, not again); one it holds needs nothing.
#[test]
fn a_collectors_own_earlier_ban_is_held_again_once_and_not_decided_again() {
    let mut s = state();
    let now = Moment::now();
    let ops: Vec<StoreOp> = s
        .adopt(from_b(addr(), false, now), "b", now)
        .into_iter()
        .collect();
    assert!(
        matches!(ops.as_slice(), [StoreOp::Ban(record, _)]
            if record.decided_by.as_deref() == Some("b")),
        "{ops:?}"
    );
    assert!(s.is_banned(addr()));
    assert!(s.adopt(from_b(addr(), false, now), "b", now).is_none());
    let mine: Target = "203.0.113.12".parse().unwrap();
    let decided = Offence {
        target: mine,
        ..offence("sshd", now.instant)
    };
    s.offence(&decided, now);
    assert!(s.adopt(from_b(mine, false, now), "b", now).is_none());
    assert_eq!(Metrics::get(&s.metrics().cluster.double_decisions), 0);
}

#[test]
fn a_ban_whose_claim_another_collector_took_is_that_ones_once() {
    let mut s = state();
    let now = Moment::now();
    let doubles = |s: &BanState| Metrics::get(&s.metrics().cluster.double_decisions);
    let sshd = name("sshd");
    let b_ban = |address: Target| from_b(address, false, now);
    // Decided here; b took the claim first: recorded as b's, once.
    s.offence(&offence("sshd", now.instant), now);
    let op = s.yield_to(&sshd, addr(), "b");
    assert!(
        matches!(&op, Some(StoreOp::Yield { address, jail, to })
            if *address == addr() && jail == "sshd" && to == "b"),
        "{op:?}"
    );
    assert!(s.yield_to(&sshd, addr(), "b").is_none());
    assert_eq!(doubles(&s), 1);
    // b's ban then arrives: held already, nothing to write, not a second double.
    assert!(s.adopt(b_ban(addr()), "a", now).is_none());
    assert!(s.is_banned(addr()));
    assert_eq!(doubles(&s), 1);
    // b's ban arrived first and a, sorting first, kept it; but b never gets a's (a did not
    // publish it: b holds the claim), so a yields after all.
    let other: Target = "203.0.113.10".parse().unwrap();
    let mut o = offence("sshd", now.instant);
    o.target = other;
    s.offence(&o, now);
    assert!(s.adopt(b_ban(other), "a", now).is_none());
    assert!(s.yield_to(&sshd, other, "b").is_some());
    assert_eq!(doubles(&s), 2);
    // An adopted ban, or none at all, has nothing to yield.
    let adopted: Target = "203.0.113.11".parse().unwrap();
    assert!(s.adopt(b_ban(adopted), "a", now).is_some());
    assert!(s.yield_to(&sshd, adopted, "b").is_none());
    assert!(s
        .yield_to(&sshd, "203.0.113.12".parse().unwrap(), "b")
        .is_none());
    assert_eq!(doubles(&s), 2);
}

#[test]
fn a_ban_held_back_for_a_claim_holder_is_taken_over_once() {
    let mut s = state();
    let sshd = name("sshd");
    let now = Moment::now();
    // Decided here while b held the claim: recorded as b's.
    let ops = s.offence_decided_by(offence("sshd", now.instant), Some("b"), now);
    assert!(
        matches!(&ops[..], [StoreOp::Ban(record, _)] if record.decided_by.as_deref() == Some("b"))
    );
    // b never published it: this collector did, and announces it; once.
    let op = s.take_over(&sshd, addr());
    assert!(
        matches!(&op, Some(StoreOp::TakeOver { address, jail }) if *address == addr() && jail == "sshd"),
        "{op:?}"
    );
    assert!(s.take_over(&sshd, addr()).is_none());
    // A ban decided here, or none at all, has nothing to take over.
    let mine: Target = "203.0.113.20".parse().unwrap();
    let mut o = offence("sshd", now.instant);
    o.target = mine;
    s.offence(&o, now);
    assert!(s.take_over(&sshd, mine).is_none());
    assert!(s
        .take_over(&sshd, "203.0.113.21".parse().unwrap())
        .is_none());
}

/// The record of a write that is a ban.
fn ban_record(ops: &[StoreOp]) -> &BanRecord {
    match ops {
        [StoreOp::Ban(record, _), ..] => record,
        other => panic!("expected a ban: {other:?}"),
    }
}

#[test]
fn a_ban_on_the_attacked_host_widens_to_the_next_host_the_attacker_offends_on() {
    let mut s = fleet_state();
    let now = Moment::now();
    let t = now.instant;
    let ops = s.offence(&offence_from("sshd", "198.51.100.10", t), now);
    assert_eq!(places_of(&commands(&ops)), vec![remote("a")]);
    // Half a minute later the attacker offends on b: b gets the ban, and a's deadline moves
    // to the fresh bantime's end with it.
    let later = Moment {
        instant: t + MIN / 2,
        wall: now.wall + MIN / 2,
    };
    let ops = s.offence(&offence_from("sshd", "198.51.100.20", later.instant), later);
    let sent = commands(&ops);
    assert_eq!(places_of(&sent), vec![remote("a"), remote("b")]);
    assert!(sent.iter().all(|c| matches!(c,
        BanCommand::Ban { expires, .. } if *expires == Some(later.instant + MIN))));
    let record = ban_record(&ops);
    assert_eq!(record.origin, "198.51.100.20");
    assert_eq!(record.more_origins, vec!["198.51.100.10".to_string()]);
    assert_eq!(record.expires, Some(later.wall + MIN));
    // Again from either host: covered, nothing to do.
    assert!(s
        .offence(&offence_from("sshd", "198.51.100.10", later.instant), later)
        .is_empty());
    assert!(s
        .offence(&offence_from("sshd", "198.51.100.20", later.instant), later)
        .is_empty());
    // One ban, ending once, on both.
    assert_eq!(s.banned_count(), 1);
    assert!(s.expire(t + MIN).is_empty(), "the first deadline moved");
    let mut ended = places_of(&commands(&s.expire(later.instant + MIN)));
    ended.sort();
    assert_eq!(ended, vec![remote("a"), remote("b")]);

    // Restored from that record, the ban is on both hosts again.
    let mut restored = fleet_state();
    let commands = restored.restore(vec![record.clone()], Vec::new(), later);
    assert_eq!(places_of(&commands), vec![remote("a"), remote("b")]);
}

#[test]
fn another_collectors_widened_ban_widens_this_ones_whoever_decided_first() {
    let now = Moment::now();
    let t = now.instant;
    // Decided here on a; b (whose name sorts first) widened it to b's host: this collector
    // widens too instead of yielding the ban it decided.
    let mut s = fleet_state();
    s.offence(&offence_from("sshd", "198.51.100.10", t), now);
    let widened = crate::cluster::SharedBan {
        origin: "198.51.100.20".into(),
        more_origins: vec!["198.51.100.10".into()],
        ..from_b(addr(), false, now)
    };
    let ops: Vec<StoreOp> = s.adopt(widened.clone(), "c", now).into_iter().collect();
    assert_eq!(places_of(&commands(&ops)), vec![remote("b")], "{ops:?}");
    assert!(!ops.iter().any(|op| matches!(op, StoreOp::Yield { .. })));
    // A collector that never held it adopts it on both hosts at once.
    let mut fresh = fleet_state();
    let ops: Vec<StoreOp> = fresh.adopt(widened, "c", now).into_iter().collect();
    assert_eq!(places_of(&commands(&ops)), vec![remote("a"), remote("b")]);
    assert_eq!(
        ban_record(&ops).more_origins,
        vec!["198.51.100.10".to_string()]
    );
    // Republished, it carries its hosts.
    let shared = fresh.shared_bans("c", now);
    assert_eq!(shared.len(), 1);
    assert_eq!(
        (shared[0].origin.as_str(), shared[0].more_origins.as_slice()),
        ("198.51.100.20", ["198.51.100.10".to_string()].as_slice())
    );
}

#[test]
fn a_prune_forgets_history_older_than_retention_and_tells_the_store_the_same() {
    let mut s = state();
    let now = Moment::now();
    let ops = s.offence(&offence("sshd", now.instant), now);
    assert_eq!(ops.len(), 1);
    let day = Duration::from_secs(86400);
    match s.prune_history(now.wall + day / 2) {
        StoreOp::Purge { before } => assert_eq!(before, now.wall - day / 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.earlier_bans(addr(), None, std::time::UNIX_EPOCH),
        1,
        "within a day"
    );
    s.prune_history(now.wall + 2 * day);
    assert_eq!(s.earlier_bans(addr(), None, std::time::UNIX_EPOCH), 0);
}
