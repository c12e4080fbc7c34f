//! What the cluster exchanges with the pipeline and the ban manager: failures in, bans both
//! ways, and a ban as the Stream carries it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::engine::millis;
use super::resp::Frame;
use crate::config::JailName;
use crate::input::Origin;
use crate::jail::Offence;
use crate::target::{ByAttacker, Target};

/// A failure a jail counted, for the shared count.
#[derive(Debug, Clone)]
pub struct SharedFailure {
    /// The jail.
    pub jail: JailName,
    /// The attacker.
    pub target: Target,
    /// Attempts the line counted.
    pub weight: u32,
    /// The jail's maxretry and findtime.
    pub maxretry: u32,
    /// The jail's findtime.
    pub findtime: Duration,
    /// How long a claim on the attacker holds: the jail's findtime, or its bantime if
    /// shorter.
    pub claim_for: Duration,
    /// When it happened.
    pub at: SystemTime,
    /// Where the message came from.
    pub origin: Origin,
    /// The origin's proven or trusted name.
    pub origin_name: Option<Arc<str>>,
    /// The line.
    pub sample: String,
    /// The journal entry it came from (its key, the same on every collector): the shared
    /// count takes it once, whichever collectors an uploader sent it to.
    pub entry: Option<[u8; 16]>,
    /// This failure made the local count reach maxretry: the collector bans the attacker
    /// itself; this failure only takes the claim on the engine, and the attacker's later
    /// failures in the jail need no shared count.
    pub reached: bool,
    /// The jail counts per origin host: the failure adds to its sender's count of the
    /// attacker only (on every collector that sender reaches).
    pub per_origin: bool,
}

/// A ban as the collectors share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedBan {
    /// The collector that decided it.
    pub node: String,
    /// The jail.
    pub jail: String,
    /// The banned address or prefix.
    pub address: Target,
    /// Failures that led to it.
    pub failures: u32,
    /// The attacked host.
    pub origin: String,
    /// When it started.
    pub started: SystemTime,
    /// When it ends; None = permanent.
    pub expires: Option<SystemTime>,
    /// The line that crossed maxretry.
    pub sample: String,
    /// Published again for an engine that lost its data (`node` then holds it, whoever
    /// decided it). The field is left out of the entry when false, as before it existed.
    pub republished: bool,
    /// Other attacked hosts the ban covers, when a jail that bans where the attack happened
    /// widened it to them (a JSON array; left out when empty, as before it existed).
    pub more_origins: Vec<String>,
    /// Where a ban by hand was told to go (`ban --place`), instead of the jail's placement
    /// (a JSON array of the rules as written; left out for the jail's).
    pub placement: Option<Vec<crate::config::PlacementRule>>,
}

impl SharedBan {
    /// The stream entry's fields.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("node", self.node.clone()),
            ("jail", self.jail.clone()),
            ("address", self.address.to_string()),
            ("failures", self.failures.to_string()),
            ("origin", self.origin.clone()),
            ("started", millis(self.started).to_string()),
            ("expires", self.expires.map_or(0, millis).to_string()),
            ("sample", self.sample.clone()),
        ];
        if self.republished {
            fields.push(("republished", "1".into()));
        }
        if !self.more_origins.is_empty() {
            fields.push((
                "more_origins",
                serde_json::Value::from(self.more_origins.as_slice()).to_string(),
            ));
        }
        if let Some(rules) = &self.placement {
            let written: Vec<String> = rules.iter().map(ToString::to_string).collect();
            fields.push(("placement", serde_json::Value::from(written).to_string()));
        }
        fields
    }

    /// Reads a stream entry's fields.
    pub fn from_fields(fields: &Fields<'_>) -> Result<SharedBan, String> {
        let get = |name: &str| -> Result<&str, String> {
            text(fields, name).ok_or_else(|| format!("no {name} field"))
        };
        let number = |name: &str| -> Result<u64, String> {
            get(name)?
                .parse()
                .map_err(|_| format!("{name} is not a number"))
        };
        // Names go into this collector's log, as a sender's host name does.
        let owned = |name: &str| match field(fields, name) {
            None => Err(format!("no {name} field")),
            Some(text) if !crate::parse::printable_name(&text) => {
                Err(format!("the {name} has control characters"))
            }
            Some(text) => Ok(text),
        };
        let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        let expires = number("expires")?;
        Ok(SharedBan {
            node: owned("node")?,
            jail: owned("jail")?,
            address: get("address")?
                .parse()
                .map_err(|_| "the address is not one".to_string())?,
            failures: u32::try_from(number("failures")?).unwrap_or(u32::MAX),
            origin: owned("origin")?,
            started: at(number("started")?),
            expires: (expires != 0).then(|| at(expires)),
            sample: field(fields, "sample").unwrap_or_default(),
            republished: value(fields, "republished") == Some(b"1"),
            more_origins: match text(fields, "more_origins") {
                None => Vec::new(),
                Some(list) => serde_json::from_str(list)
                    .map_err(|_| "more_origins is not a list of names".to_string())?,
            },
            placement: match text(fields, "placement") {
                None => None,
                Some(list) => {
                    let written: Vec<String> = serde_json::from_str(list)
                        .map_err(|_| "placement is not a list of rules".to_string())?;
                    let rules = written
                        .iter()
                        .map(|r| crate::config::PlacementRule::from_stored(r))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| format!("placement {list} names an unknown rule"))?;
                    Some(rules)
                }
            },
        })
    }
}

/// A stream entry's fields as read: (name, value) pairs, in order, borrowed from the reply.
pub type Fields<'a> = [(&'a [u8], &'a [u8])];

/// The entries of an XREAD reply of one stream (`[[key, [entry, ...]]]`; nil when nothing
/// new): None when it holds none.
pub fn stream_entries(reply: Frame<'_>) -> Option<Frame<'_>> {
    reply
        .items()
        .next()
        .and_then(|stream| stream.items().nth(1))
}

/// One stream entry (`[id, [name, value, ...]]`): its id, its fields put in `fields` (what
/// is not a string reads as empty). None: no id, the entry is skipped.
pub fn read_entry<'a>(
    entry: Frame<'a>,
    fields: &mut Vec<(&'a [u8], &'a [u8])>,
) -> Option<&'a [u8]> {
    let mut parts = entry.items();
    let id = parts.next().and_then(Frame::bytes)?;
    fields.clear();
    let mut values = parts.next().map(Frame::items).into_iter().flatten();
    while let (Some(name), Some(value)) = (values.next(), values.next()) {
        fields.push((
            name.bytes().unwrap_or_default(),
            value.bytes().unwrap_or_default(),
        ));
    }
    Some(id)
}

/// The value of field `name` (names compared as bytes: a storm's follower reads tens of
/// thousands of entries).
fn value<'a>(fields: &Fields<'a>, name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| *n == name.as_bytes())
        .map(|(_, v)| *v)
}

/// Field `name` as UTF-8 (None: missing, or not text).
fn text<'a>(fields: &Fields<'a>, name: &str) -> Option<&'a str> {
    value(fields, name).and_then(|v| std::str::from_utf8(v).ok())
}

/// Field `name` as owned text (bytes that are not UTF-8 replaced, as in a log line).
fn field(fields: &Fields<'_>, name: &str) -> Option<String> {
    value(fields, name).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Whether a stream entry's fields say it comes from collector `node` (its own entries a
/// follower skips without reading them further).
pub fn from_node(fields: &Fields<'_>, node: &str) -> bool {
    value(fields, "node") == Some(node.as_bytes())
}

/// An entry of the ban stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// A ban decided on a collector.
    Ban(SharedBan),
    /// An address lifted by hand (`unban`) on a collector: lifted everywhere.
    Unban {
        /// The collector where it was lifted.
        node: String,
        /// The address or prefix.
        address: Target,
    },
}

impl Published {
    /// The collector it comes from.
    pub fn node(&self) -> &str {
        match self {
            Published::Ban(ban) => &ban.node,
            Published::Unban { node, .. } => node,
        }
    }

    /// The stream entry's fields (a ban's carry no `event`, as before unbans were shared).
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        match self {
            Published::Ban(ban) => ban.fields(),
            Published::Unban { node, address } => vec![
                ("event", "unban".to_string()),
                ("node", node.clone()),
                ("address", address.to_string()),
            ],
        }
    }

    /// Reads a stream entry's fields.
    pub fn from_fields(fields: &Fields<'_>) -> Result<Published, String> {
        match value(fields, "event") {
            None | Some(b"ban") => SharedBan::from_fields(fields).map(Published::Ban),
            Some(b"unban") => Ok(Published::Unban {
                node: field(fields, "node").ok_or("no node field")?,
                address: text(fields, "address")
                    .and_then(|a| a.parse().ok())
                    .ok_or("no address field, or not an address")?,
            }),
            Some(other) => Err(format!(
                "unknown event {:?}",
                String::from_utf8_lossy(other)
            )),
        }
    }
}

/// What the cluster asks of the ban manager.
#[derive(Debug, Clone)]
pub enum ToBan {
    /// Other collectors' bans, in the order one read of the stream found them: hold them
    /// here too, until they end there. (One message per read, not per ban: a storm's
    /// adoptions then wake the ban manager once per read.)
    Adopt(Vec<SharedBan>),
    /// Another collector lifted this address by hand: lift it here too.
    Unban(Target),
    /// The engine lost its data: publish every active ban again.
    Republish,
    /// Bans decided here whose claim another collector took first: that collector
    /// publishes and announces them; these were not published.
    Yield(Vec<Yielded>),
    /// Bans decided here and held back for another collector's claim, whose holder never
    /// published them (it stopped in between): published from here now, so announced from
    /// here too. Each is the jail and the banned address or prefix.
    TakeOver(Vec<(JailName, Target)>),
}

/// A ban decided here that is another collector's to publish and announce.
#[derive(Debug, Clone)]
pub struct Yielded {
    /// The jail.
    pub jail: JailName,
    /// The banned address or prefix.
    pub address: Target,
    /// The collector holding the claim.
    pub to: Arc<str>,
}

/// Attackers whose shared count another collector claimed, per jail, with that collector's
/// name: a ban this collector's own count decides for one of them (before the other's ban
/// arrives) is held here at once, but it is the other collector's to publish and announce.
/// Written by the counter, read by the ban manager. Also the bans held back that way, until
/// the claim holder's ban arrives (the follower says so) or is overdue.
#[derive(Debug, Default)]
pub struct ClaimedElsewhere(Mutex<Held>);

/// Per jail and attacker: the collector holding the claim, and when it lapses.
type Claims = ByAttacker<(JailName, Target), (Arc<str>, Instant)>;

#[derive(Debug, Default)]
struct Held {
    claims: Claims,
    /// Bans decided here and not published because another collector holds the claim, per
    /// jail and attacker, with the time by which that collector's ban should have arrived.
    awaited: ByAttacker<(JailName, Target), (SharedBan, Instant)>,
}

/// Most attackers remembered as claimed elsewhere, and most bans held back (past it, a
/// storm's double decisions are only published twice, and a ban held back past it is
/// not published should its claim holder never publish it).
const CLAIMED_ELSEWHERE_CAP: usize = 1_000_000;

impl ClaimedElsewhere {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // The maps hold no invariant a panicking holder could break.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `node` holds the claim of `target` in `jail` until `until`.
    pub fn note(&self, jail: &JailName, target: Target, node: &str, until: Instant) {
        let claims = &mut self.held().claims;
        let key = (jail.clone(), target);
        if claims.len() < CLAIMED_ELSEWHERE_CAP || claims.contains_key(&key) {
            claims.insert(key, (Arc::from(node), until));
        }
    }

    /// `target` was lifted by hand: no claim on it holds any more, in any jail, and no ban
    /// of it held back is published.
    pub fn forget_address(&self, target: Target) {
        let mut held = self.held();
        held.claims.retain(|(_, t), _| *t != target);
        held.awaited.retain(|(_, t), _| *t != target);
    }

    /// This collector took the claim: nobody else holds it.
    pub fn forget(&self, jail: &JailName, target: Target) {
        self.held().claims.remove(&(jail.clone(), target));
    }

    /// The collector that holds the claim of `target` in `jail` now, if another does.
    pub fn holder(&self, jail: &JailName, target: Target) -> Option<Arc<str>> {
        let held = self.held();
        let (node, until) = held.claims.get(&(jail.clone(), target))?;
        (*until > Instant::now()).then(|| node.clone())
    }

    /// Drops the claims that lapsed by `now`.
    pub fn prune(&self, now: Instant) {
        self.held().claims.retain(|_, (_, until)| *until > now);
    }

    /// `ban` (decided here, in `jail`) was not published because another collector holds
    /// its claim; that collector's ban should arrive by `due`.
    pub fn hold_back(&self, jail: JailName, ban: SharedBan, due: Instant) {
        let awaited = &mut self.held().awaited;
        if awaited.len() < CLAIMED_ELSEWHERE_CAP {
            awaited.insert((jail, ban.address), (ban, due));
        }
    }

    /// Bans of other collectors read from the stream: the bans held back for them here are
    /// published.
    pub fn arrived(&self, bans: &[SharedBan]) {
        let awaited = &mut self.held().awaited;
        if awaited.is_empty() {
            return;
        }
        for ban in bans {
            if let Ok(jail) = JailName::new(&ban.jail) {
                awaited.remove(&(jail, ban.address));
            }
        }
    }

    /// The bans held back whose claim holder's ban did not arrive by `now`, taken out.
    pub fn overdue(&self, now: Instant) -> Vec<SharedBan> {
        let awaited = &mut self.held().awaited;
        let due: Vec<(JailName, Target)> = awaited
            .iter()
            .filter(|(_, (_, due))| *due <= now)
            .map(|(key, _)| key.clone())
            .collect();
        due.iter()
            .filter_map(|key| awaited.remove(key))
            .map(|(ban, _)| ban)
            .collect()
    }
}

/// The cluster's channels.
#[derive(Debug)]
pub struct Links {
    /// Failures from the jails.
    pub failures: mpsc::Receiver<Vec<SharedFailure>>,
    /// The failures that made a local count reach maxretry, on a queue of their own: each
    /// takes the attacker's claim before the ban it made is published (not seconds later,
    /// behind a storm's counted failures).
    pub reached: mpsc::Receiver<SharedFailure>,
    /// Bans this collector decided, and addresses lifted here by hand, to publish.
    pub decided: mpsc::Receiver<Published>,
    /// Offences the shared count decided, to the ban manager.
    pub offences: mpsc::Sender<Offence>,
    /// Adoptions and requests, to the ban manager.
    pub to_ban: mpsc::Sender<ToBan>,
    /// What the counter learns of claims other collectors hold, for the ban manager.
    pub claims: Arc<ClaimedElsewhere>,
    /// The jails, whose claims on an address lifted by hand are lifted with it.
    pub jails: Vec<JailName>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_ban_survives_its_stream_fields() {
        let ban = SharedBan {
            node: "a".into(),
            jail: "sshd".into(),
            address: "198.51.100.7".parse().unwrap(),
            failures: 5,
            origin: "web1".into(),
            started: SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000),
            expires: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_600_000)),
            sample: "Failed password".into(),
            republished: false,
            more_origins: Vec::new(),
            placement: None,
        };
        // As the follower reads them: borrowed name and value pairs.
        let read = |fields: &[(&'static str, String)], check: &dyn Fn(&Fields<'_>)| {
            let pairs: Vec<(&[u8], &[u8])> = fields
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                .collect();
            check(&pairs);
        };
        read(&ban.fields(), &|fields| {
            assert_eq!(SharedBan::from_fields(fields).unwrap(), ban);
            assert!(from_node(fields, "a"));
            assert!(!from_node(fields, "ab") && !from_node(fields, "sshd"));
        });
        let permanent = SharedBan {
            expires: None,
            republished: true,
            more_origins: vec!["web2".into(), "a \"quoted\", name".into()],
            placement: Some(vec![
                crate::config::PlacementRule::Local,
                crate::config::PlacementRule::Group("web".into()),
            ]),
            ..ban.clone()
        };
        read(&permanent.fields(), &|fields| {
            assert_eq!(SharedBan::from_fields(fields).unwrap(), permanent);
            assert!(SharedBan::from_fields(&fields[1..]).is_err(), "no node");
            let mut garbled: Vec<(&[u8], &[u8])> = fields.to_vec();
            garbled.last_mut().unwrap().1 = b"web2";
            assert!(
                SharedBan::from_fields(&garbled).is_err(),
                "more_origins not a list"
            );
            assert_eq!(
                Published::from_fields(fields).unwrap(),
                Published::Ban(permanent.clone())
            );
        });
        let unban = Published::Unban {
            node: "b".into(),
            address: "198.51.100.0/24".parse().unwrap(),
        };
        read(&unban.fields(), &|fields| {
            assert_eq!(Published::from_fields(fields).unwrap(), unban);
        });
        for (name, forged) in [("origin", "web1\nINFO forged"), ("node", "a\u{1b}[2J")] {
            let mut fields = ban.fields();
            fields.iter_mut().find(|(n, _)| *n == name).unwrap().1 = forged.into();
            read(&fields, &|fields| {
                let error = SharedBan::from_fields(fields).unwrap_err();
                assert!(error.contains(name), "{error}");
            });
        }
        let mut odd = ban.fields();
        odd.push(("event", "renamed".into()));
        read(&odd, &|fields| {
            assert!(Published::from_fields(fields).is_err(), "an unknown event");
        });
    }

    #[test]
    fn a_claim_held_elsewhere_is_named_until_it_lapses_or_is_taken_here() {
        let claims = ClaimedElsewhere::default();
        let sshd = JailName::new("sshd").unwrap();
        let postfix = JailName::new("postfix").unwrap();
        let (one, two): (Target, Target) = (
            "198.51.100.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
        );
        let now = Instant::now();
        claims.note(&sshd, one, "b", now + Duration::from_secs(60));
        claims.note(&sshd, two, "c", now);
        assert_eq!(claims.holder(&sshd, one).as_deref(), Some("b"));
        // Per jail, and a lapsed claim names nobody.
        assert_eq!(claims.holder(&postfix, one), None);
        assert_eq!(claims.holder(&sshd, two), None);
        claims.prune(now + Duration::from_secs(1));
        assert_eq!(claims.held().claims.len(), 1, "the lapsed claim is dropped");
        // This collector took the claim (after the other's lapsed): nobody else holds it.
        claims.forget(&sshd, one);
        assert_eq!(claims.holder(&sshd, one), None);
    }

    #[test]
    fn a_ban_held_back_goes_out_when_overdue_unless_it_arrived_or_was_lifted() {
        let claims = ClaimedElsewhere::default();
        let sshd = JailName::new("sshd").unwrap();
        let ban = |address: &str| SharedBan {
            node: "a".into(),
            jail: "sshd".into(),
            address: address.parse().unwrap(),
            failures: 5,
            origin: "web1".into(),
            started: SystemTime::now(),
            expires: None,
            sample: String::new(),
            republished: false,
            more_origins: Vec::new(),
            placement: None,
        };
        let (arrives, lifted, never) = (
            ban("198.51.100.1"),
            ban("198.51.100.2"),
            ban("198.51.100.3"),
        );
        let now = Instant::now();
        let due = now + Duration::from_secs(10);
        for held in [&arrives, &lifted, &never] {
            claims.hold_back(sshd.clone(), held.clone(), due);
        }
        assert!(claims.overdue(now).is_empty(), "not due yet");
        // The holder's ban of the first arrives (from whichever collector), the second is
        // lifted by hand.
        let mut theirs = arrives.clone();
        theirs.node = "b".into();
        claims.arrived(&[theirs]);
        claims.forget_address(lifted.address);
        assert_eq!(claims.overdue(due), vec![never]);
        assert!(claims.overdue(due).is_empty(), "taken out once");
    }
}
