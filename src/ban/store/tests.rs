//! The store's unit tests: the SQL against a real SQLite file, reopened as a restart would.

use super::*;

fn record(
    address: &str,
    jail: &str,
    started: SystemTime,
    expires: Option<SystemTime>,
) -> BanRecord {
    BanRecord {
        address: address.parse().unwrap(),
        jail: jail.into(),
        origin: "198.51.100.10".into(),
        started,
        expires,
        failures: 3,
        sample: "Failed password".into(),
        lines: Vec::new(),
        decided_by: None,
        more_origins: Vec::new(),
        placement: None,
    }
}

#[test]
fn a_widened_ban_keeps_its_other_hosts_and_placement_through_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let first = record(
        "203.0.113.1",
        "sshd",
        t0,
        Some(t0 + Duration::from_secs(60)),
    );
    let widened = BanRecord {
        origin: "198.51.100.20".into(),
        more_origins: vec!["198.51.100.10".into(), "web \"7\"".into()],
        placement: Some(vec![
            PlacementRule::Origin,
            PlacementRule::Group("web".into()),
            PlacementRule::Target(crate::config::TargetName::new("b").unwrap()),
        ]),
        expires: Some(t0 + Duration::from_secs(90)),
        ..first.clone()
    };
    {
        let mut store = Store::open(dir.path()).unwrap();
        store
            .write(&[StoreOp::Ban(first.clone(), Vec::new())])
            .unwrap();
        let active = store.active(t0).unwrap();
        assert!(active[0].more_origins.is_empty());
        store
            .write(&[StoreOp::Ban(widened.clone(), Vec::new())])
            .unwrap();
    }
    let mut store = Store::open(dir.path()).unwrap();
    let active = store.active(t0).unwrap();
    assert_eq!(active.len(), 1, "a widening renews the one row");
    assert_eq!(active[0].origin, widened.origin);
    assert_eq!(active[0].more_origins, widened.more_origins);
    assert_eq!(active[0].placement, widened.placement);
    assert_eq!(active[0].expires, widened.expires);
    // A value we did not write reads as no other hosts.
    store
        .conn
        .execute_batch("UPDATE bans SET more_origins = 'web2', placement = 'all'")
        .unwrap();
    let read = &store.active(t0).unwrap()[0];
    assert!(read.more_origins.is_empty());
    assert_eq!(read.placement, None, "the jail's placement");
}

#[test]
fn bans_survive_reopen_and_expired_ones_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    {
        let mut store = Store::open(dir.path()).unwrap();
        store
            .write(&[
                StoreOp::Ban(
                    record(
                        "203.0.113.1",
                        "sshd",
                        t0,
                        Some(t0 + Duration::from_secs(60)),
                    ),
                    Vec::new(),
                ),
                StoreOp::Ban(
                    record(
                        "203.0.113.2",
                        "sshd",
                        t0,
                        Some(t0 + Duration::from_secs(600)),
                    ),
                    Vec::new(),
                ),
                StoreOp::Ban(record("2001:db8::3", "postfix", t0, None), Vec::new()),
                StoreOp::Ban(
                    record(
                        "203.0.113.4",
                        "sshd",
                        t0,
                        Some(t0 + Duration::from_secs(600)),
                    ),
                    Vec::new(),
                ),
                StoreOp::End {
                    address: "203.0.113.4".parse().unwrap(),
                    jail: "sshd".into(),
                    commands: Vec::new(),
                },
            ])
            .unwrap();
    }
    let mut store = Store::open(dir.path()).unwrap();
    let mut active = store.active(t0 + Duration::from_secs(120)).unwrap();
    active.sort_by_key(|r| r.address);
    let addresses: Vec<String> = active.iter().map(|r| r.address.to_string()).collect();
    assert_eq!(addresses, vec!["203.0.113.2", "2001:db8::3"]);
    assert_eq!(active[0].expires, Some(t0 + Duration::from_secs(600)));
    assert_eq!(active[1].expires, None);
    let later = t0 + Duration::from_secs(120);
    assert_eq!(store.active_count(later).unwrap(), 2);
    // History keeps all four bans, including the expired and the ended one.
    assert_eq!(store.history_since(t0).unwrap().len(), 4);
    // A purge takes the rows of bans over, however old the others.
    assert_eq!(
        store
            .purge_history(t0 + Duration::from_secs(1), later)
            .unwrap(),
        2
    );
    let mut kept: Vec<String> = (store.history_since(t0).unwrap().into_iter())
        .map(|(address, _, _)| address.to_string())
        .collect();
    kept.sort();
    assert_eq!(kept, ["2001:db8::3", "203.0.113.2"]);
    assert_eq!(store.active(later).unwrap().len(), 2);
}

#[test]
fn a_ban_is_one_row_that_ends_early_only_when_lifted_and_stays_as_history() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = SystemTime::now() - Duration::from_secs(10);
    let ban = |address: &str, expires: Option<u64>| {
        StoreOp::Ban(
            record(
                address,
                "sshd",
                t0,
                expires.map(|after| t0 + Duration::from_secs(after)),
            ),
            Vec::new(),
        )
    };
    let end = |address: &str| StoreOp::End {
        address: address.parse().unwrap(),
        jail: "sshd".into(),
        commands: Vec::new(),
    };
    let mut store = Store::open(dir.path()).unwrap();
    store
        .write(&[
            ban("203.0.113.1", Some(5)),
            ban("203.0.113.2", Some(600)),
            ban("203.0.113.3", None),
        ])
        .unwrap();
    // .1 is past its deadline (the kernel ended it), .2 and .3 are lifted.
    store
        .write(&[end("203.0.113.1"), end("203.0.113.2"), end("203.0.113.3")])
        .unwrap();
    let rows: Vec<(String, Option<i64>)> = store
        .conn
        .prepare("SELECT address, ended FROM bans ORDER BY rowid")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 3, "one row per ban, none deleted: {rows:?}");
    assert_eq!(rows[0].1, None, "ended at its deadline: no write");
    assert!(rows[1].1.is_some() && rows[2].1.is_some(), "{rows:?}");
    assert!(store.active(SystemTime::now()).unwrap().is_empty());
    // The views scripts read.
    let history: i64 = store
        .conn
        .query_row("SELECT COUNT(*) FROM history", [], |row| row.get(0))
        .unwrap();
    assert_eq!(history, 3);
    store.write(&[ban("203.0.113.4", Some(600))]).unwrap();
    let in_force: Vec<String> = store
        .conn
        .prepare("SELECT address FROM active_bans")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(in_force, ["203.0.113.4"]);
}

#[test]
fn a_store_with_a_history_table_has_it_merged_into_bans_once() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = millis(SystemTime::now()) - 50_000;
    {
        // As the version before the merge left it: the active bans, and a history row
        // for each ban made (one of them a widening's repeat, one an earlier ban of .1).
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE bans (address TEXT NOT NULL, jail TEXT NOT NULL,
                 origin TEXT NOT NULL, started INTEGER NOT NULL, expires INTEGER,
                 failures INTEGER NOT NULL, sample TEXT NOT NULL, decided_by TEXT,
                 more_origins TEXT, placement TEXT);
             INSERT INTO bans VALUES ('198.51.100.1', 'sshd', 'web1', {t0}, NULL, 5, 'x',
                 NULL, NULL, NULL);
             CREATE TABLE history (id INTEGER PRIMARY KEY, address TEXT NOT NULL,
                 jail TEXT NOT NULL, origin TEXT NOT NULL, started INTEGER NOT NULL,
                 expires INTEGER);
             CREATE INDEX history_started ON history (started);
             INSERT INTO history (address, jail, origin, started, expires) VALUES
                 ('198.51.100.1', 'sshd', 'web1', {early}, {early_end}),
                 ('198.51.100.2', 'sshd', 'web1', {early}, {later}),
                 ('198.51.100.1', 'sshd', 'web1', {t0}, NULL),
                 ('198.51.100.1', 'sshd', 'web2', {t0}, NULL);",
            early = t0 - 100_000,
            early_end = t0 - 40_000,
            later = t0 + 3_600_000,
        ))
        .unwrap();
    }
    let mut store = Store::open(dir.path()).unwrap();
    let at = |ms: i64| from_millis(ms);
    let active = store.active(at(t0 + 1)).unwrap();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!((active[0].origin.as_str(), active[0].failures), ("web1", 5));
    let history: Vec<(String, i64, Option<i64>)> = store
        .conn
        .prepare("SELECT address, started, ended FROM history ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        history.len(),
        3,
        "the active ban's own rows are not repeated: {history:?}"
    );
    assert_eq!(history[0], ("198.51.100.1".into(), t0, None));
    assert_eq!(
        history[1],
        ("198.51.100.1".into(), t0 - 100_000, Some(t0 - 40_000))
    );
    // .2's deadline is ahead but it is not in `bans`: lifted (or renewed) by now.
    assert_eq!(history[2].0, "198.51.100.2");
    assert!(history[2].2.is_some());
    let indexes: i64 = store
        .conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index'
                 AND name IN ('history_started', 'bans_merging')",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 0);
    drop(store);
    // Opened again (the notify stage, a restart): nothing moves twice.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.history_since(at(0)).unwrap().len(), 3);
    assert_eq!(store.history_since(at(t0)).unwrap().len(), 1);
}

/// `store` with sshd's bans and unbans queued for notifier `ops`.
fn notifying_sshd(store: Store) -> Store {
    let mut routes = event::Routes::new();
    routes.insert(
        "sshd".into(),
        vec![event::Route {
            notifier: "ops".into(),
            ban: true,
            unban: true,
        }],
    );
    let wake = Arc::new(tokio::sync::Notify::new());
    store.with_notifications(Arc::new(std::sync::RwLock::new(routes)), wake)
}

#[test]
fn a_ban_and_its_end_queue_notifications_in_their_own_transactions() {
    let mut store = notifying_sshd(Store::in_memory().unwrap());
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let ban = record(
        "198.51.100.9",
        "sshd",
        t0,
        Some(t0 + Duration::from_secs(60)),
    );
    let other = record("198.51.100.10", "postfix", t0, None);
    store
        .write(&[StoreOp::Ban(ban, vec![]), StoreOp::Ban(other, vec![])])
        .unwrap();
    let queued = store.outbox("ops", 10).unwrap();
    assert_eq!(queued.len(), 1, "postfix has no notifier: {queued:?}");
    assert!(
        queued[0].body.contains("\"event\":\"ban\""),
        "{}",
        queued[0].body
    );
    store
        .write(&[StoreOp::End {
            address: "198.51.100.9".parse().unwrap(),
            jail: "sshd".into(),
            commands: vec![],
        }])
        .unwrap();
    let queued = store.outbox("ops", 10).unwrap();
    assert_eq!(queued.len(), 2);
    let end: serde_json::Value = serde_json::from_str(&queued[1].body).unwrap();
    // The end tells what the ended ban was, read from its row before it went.
    assert_eq!(
        (end["event"].as_str(), end["bantime"].as_u64()),
        (Some("unban"), Some(60))
    );
    store.outbox_done(&[queued[0].id]).unwrap();
    assert_eq!(store.outbox_counts().unwrap(), vec![("ops".to_string(), 1)]);
}

/// A store as written before `decided_by` and before the key index went, with `rows`
/// (SQL inserts into `bans`).
fn older_store(dir: &Path, rows: &str) {
    let conn = Connection::open(dir.join(DB_FILE)).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE bans (address TEXT NOT NULL, jail TEXT NOT NULL, origin TEXT NOT NULL,
             started INTEGER NOT NULL, expires INTEGER, failures INTEGER NOT NULL,
             sample TEXT NOT NULL, PRIMARY KEY (address, jail));
         {rows}"
    ))
    .unwrap();
}

#[test]
fn a_ban_another_collector_decided_is_announced_there_not_here() {
    let dir = tempfile::tempdir().unwrap();
    // A store from before `decided_by`: its bans were all decided here.
    older_store(
        dir.path(),
        "INSERT INTO bans VALUES ('198.51.100.1', 'sshd', 'web1', 1, NULL, 5, 'x');",
    );
    let mut store = notifying_sshd(Store::open(dir.path()).unwrap());
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let adopted = BanRecord {
        decided_by: Some("b".into()),
        ..record("198.51.100.2", "sshd", t0, None)
    };
    store.write(&[StoreOp::Ban(adopted, vec![])]).unwrap();
    assert!(store.outbox("ops", 10).unwrap().is_empty());
    let mut active = store.active(t0).unwrap();
    active.sort_by_key(|r| r.address);
    let deciders: Vec<Option<&str>> = active.iter().map(|r| r.decided_by.as_deref()).collect();
    assert_eq!(deciders, vec![None, Some("b")]);
    let end = |address: &str| StoreOp::End {
        address: address.parse().unwrap(),
        jail: "sshd".into(),
        commands: vec![],
    };
    store.write(&[end("198.51.100.2")]).unwrap();
    assert!(store.outbox("ops", 10).unwrap().is_empty());
    // The old row's end is this collector's to announce.
    store.write(&[end("198.51.100.1")]).unwrap();
    assert_eq!(store.outbox("ops", 10).unwrap().len(), 1);
}

/// The bodies waiting for notifier `ops`.
fn bodies(store: &Store) -> Vec<String> {
    store
        .outbox("ops", 10)
        .unwrap()
        .into_iter()
        .map(|row| row.body)
        .collect()
}

fn ban_indexes(store: &Store) -> i64 {
    store
        .conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'bans'",
            [],
            |row| row.get(0),
        )
        .unwrap()
}

#[test]
fn a_renewal_and_an_end_find_the_bans_row_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let ban = |expires: u64| {
        StoreOp::Ban(
            record(
                "198.51.100.5",
                "sshd",
                t0,
                Some(t0 + Duration::from_secs(expires)),
            ),
            Vec::new(),
        )
    };
    let end = || StoreOp::End {
        address: "198.51.100.5".parse().unwrap(),
        jail: "sshd".into(),
        commands: Vec::new(),
    };
    {
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(ban_indexes(&store), 0, "no key index on disk");
        // Renewed in the same transaction and in the next one.
        store.write(&[ban(60), ban(600)]).unwrap();
        store.write(&[ban(6000)]).unwrap();
        assert_eq!(store.active_count(t0).unwrap(), 1);
        store
            .write(&[StoreOp::Ban(
                record("198.51.100.5", "postfix", t0, None),
                Vec::new(),
            )])
            .unwrap();
    }
    let mut store = Store::open(dir.path()).unwrap();
    // An end first, before anything else read the table: the row is found again.
    store.write(&[end()]).unwrap();
    let active = store.active(t0).unwrap();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].jail, "postfix");
    store.write(&[end(), ban(60), end()]).unwrap();
    assert_eq!(
        store.active_count(t0).unwrap(),
        1,
        "ended within one transaction"
    );
    assert_eq!(store.history_since(t0).unwrap().len(), 5);
}

#[test]
fn an_older_store_loses_its_key_index_and_keeps_its_bans_and_duplicates_go() {
    let dir = tempfile::tempdir().unwrap();
    older_store(
        dir.path(),
        "INSERT INTO bans VALUES ('198.51.100.1', 'sshd', 'web1', 1, NULL, 5, 'x');
         INSERT INTO bans VALUES ('198.51.100.2', 'sshd', 'web1', 1, NULL, 5, 'x');
         CREATE TABLE outbox (id INTEGER PRIMARY KEY, notifier TEXT NOT NULL,
             body TEXT NOT NULL, created INTEGER NOT NULL);
         INSERT INTO outbox (notifier, body, created) VALUES ('ops', 'waiting', 1);",
    );
    let store = Store::open(dir.path()).unwrap();
    // The outbox from before names no ban; what waited there still does.
    let waiting = bodies(&store);
    assert_eq!(waiting, ["waiting"]);
    store
        .conn
        .execute(
            "INSERT INTO outbox (notifier, body, created, ban) VALUES ('ops', 'new', 2, 'sshd x')",
            [],
        )
        .unwrap();
    store
        .conn
        .execute_batch("UPDATE bans SET decided_by = 'b' WHERE address = '198.51.100.2'")
        .unwrap();
    assert_eq!(ban_indexes(&store), 0);
    // A second opener (the notify stage) finds it done.
    drop(Store::open(dir.path()).unwrap());
    // Two rows for one ban (a hand's edit): the later is the ban.
    store
        .conn
        .execute_batch(
            "INSERT INTO bans (address, jail, origin, started, expires, failures, sample)
                 VALUES ('198.51.100.1', 'sshd', 'web2', 2, NULL, 6, 'y');",
        )
        .unwrap();
    drop(store);
    let mut store = Store::open(dir.path()).unwrap();
    let mut active = store.active(UNIX_EPOCH).unwrap();
    active.sort_by_key(|r| r.address);
    let got: Vec<(String, &str, Option<&str>)> = active
        .iter()
        .map(|r| {
            (
                r.address.to_string(),
                r.origin.as_str(),
                r.decided_by.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("198.51.100.1".to_string(), "web2", None),
            ("198.51.100.2".to_string(), "web1", Some("b"))
        ]
    );
    assert_eq!(
        store.active_count(UNIX_EPOCH).unwrap(),
        2,
        "the duplicate row was ended"
    );
    let rows: i64 = store
        .conn
        .query_row("SELECT COUNT(*) FROM bans", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 3, "and kept as history");
}

#[test]
fn a_yielded_ban_is_the_others_to_announce_and_its_waiting_notifications_go() {
    let mut store = notifying_sshd(Store::in_memory().unwrap());
    let t0 = SystemTime::now() - Duration::from_secs(1);
    let (yielded, kept) = ("198.51.100.9", "198.51.100.10");
    // An earlier ban of the same address, its notification still waiting (its notifier
    // down): not this ban's to withdraw.
    store
        .conn
        .execute(
            "INSERT INTO outbox (notifier, body, created, ban) VALUES ('ops', 'earlier', ?1, ?2)",
            params![
                millis(t0 - Duration::from_secs(60)),
                format!("sshd {yielded}")
            ],
        )
        .unwrap();
    store
        .write(&[
            StoreOp::Ban(record(yielded, "sshd", t0, None), vec![]),
            StoreOp::Ban(record(kept, "sshd", t0, None), vec![]),
        ])
        .unwrap();
    assert_eq!(store.outbox("ops", 10).unwrap().len(), 3);
    store
        .write(&[StoreOp::Yield {
            address: yielded.parse().unwrap(),
            jail: "sshd".into(),
            to: "b".into(),
        }])
        .unwrap();
    let waiting = bodies(&store);
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    assert_eq!(waiting[0], "earlier");
    assert!(waiting[1].contains(kept), "{waiting:?}");
    let deciders: Vec<(String, Option<String>)> = store
        .active(t0)
        .unwrap()
        .into_iter()
        .map(|r| (r.address.to_string(), r.decided_by))
        .collect();
    assert!(deciders.contains(&(yielded.to_string(), Some("b".to_string()))));
    assert!(deciders.contains(&(kept.to_string(), None)));
    // Its end is b's to announce too.
    let end = |address: &str| StoreOp::End {
        address: address.parse().unwrap(),
        jail: "sshd".into(),
        commands: vec![],
    };
    store.write(&[end(yielded), end(kept)]).unwrap();
    let events: Vec<String> = bodies(&store)
        .into_iter()
        .filter(|body| body.contains("unban"))
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains(kept));
    // Notifications not yet old enough wait.
    assert!(store.outbox_before("ops", 10, t0).unwrap().len() == 1);
    assert!(store.outbox_first_after("ops", t0).unwrap().is_some());
    assert_eq!(
        store.outbox_first_after("ops", SystemTime::now()).unwrap(),
        None
    );
}

#[test]
fn a_ban_taken_over_from_a_claim_holder_is_announced_here_and_its_end_too() {
    let mut store = notifying_sshd(Store::in_memory().unwrap());
    let t0 = SystemTime::now() - Duration::from_secs(1);
    let address = "198.51.100.11";
    let mut held_back = record(address, "sshd", t0, None);
    held_back.decided_by = Some("ghost".into());
    store.write(&[StoreOp::Ban(held_back, vec![])]).unwrap();
    assert!(bodies(&store).is_empty(), "the holder's to announce");
    let take_over = StoreOp::TakeOver {
        address: address.parse().unwrap(),
        jail: "sshd".into(),
    };
    store.write(std::slice::from_ref(&take_over)).unwrap();
    let waiting = bodies(&store);
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert!(waiting[0].contains(address) && !waiting[0].contains("unban"));
    let deciders: Vec<Option<String>> = store
        .active(t0)
        .unwrap()
        .into_iter()
        .map(|r| r.decided_by)
        .collect();
    assert_eq!(deciders, vec![None]);
    // Taken over once only: a repeat finds it this collector's and queues nothing more.
    store.write(&[take_over]).unwrap();
    store
        .write(&[StoreOp::End {
            address: address.parse().unwrap(),
            jail: "sshd".into(),
            commands: vec![],
        }])
        .unwrap();
    let events = bodies(&store);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[1].contains("unban"));
}

#[test]
fn a_purge_while_running_deletes_the_old_rows_of_bans_over_only() {
    let mut store = Store::in_memory().unwrap();
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let old = now - 10 * day;
    store
        .write(&[
            // Began long ago: one ran out, one is permanent, one was lifted.
            StoreOp::Ban(
                record("203.0.113.1", "sshd", old, Some(old + day)),
                Vec::new(),
            ),
            StoreOp::Ban(record("203.0.113.2", "sshd", old, None), Vec::new()),
            StoreOp::Ban(record("203.0.113.3", "sshd", old, None), Vec::new()),
            StoreOp::End {
                address: "203.0.113.3".parse().unwrap(),
                jail: "sshd".into(),
                commands: Vec::new(),
            },
            // Recent, and over.
            StoreOp::Ban(
                record("203.0.113.4", "sshd", now - day, Some(now - day / 2)),
                Vec::new(),
            ),
        ])
        .unwrap();
    store
        .write(&[StoreOp::Purge {
            before: now - 7 * day,
        }])
        .unwrap();
    let mut left: Vec<String> = store
        .history_since(UNIX_EPOCH)
        .unwrap()
        .into_iter()
        .map(|(address, _, _)| address.to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["203.0.113.2", "203.0.113.4"]);
    assert_eq!(store.active(now).unwrap().len(), 1, "the permanent ban");
}
