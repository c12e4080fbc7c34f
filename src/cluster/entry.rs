//! A ban as the collectors share it, and the ban stream's entries: a shared ban in one
//! field, `ban`, its values joined by tabs with the line that crossed maxretry last (the only
//! value that may hold a tab); an unban (and a ban from an earlier version) with a field per
//! value. A follower reads every entry of the stream, other collectors' and its own, and
//! parsing the reply's strings was most of that: one string instead of eight is what the one
//! field is for. Entries written by earlier versions are read as well.
//!
//! Owns the entries' fields and their text; reading the stream and writing to it is
//! `follow`'s and `engine`'s.

use std::time::{Duration, SystemTime};

use super::engine::millis;
use super::resp::Frame;
use crate::target::Target;

/// The one field's name.
const FIELD: &str = "ban";
const TAB: u8 = b'\t';
/// Values before the line: node, jail, address, failures, origin, started, expires, flags.
const HEAD_VALUES: usize = 8;

/// The forms of a ban entry a collector of this version reads, as its heartbeat tells the
/// others: 2, a ban in one field as well as a field per value. A heartbeat without the
/// number is an earlier version's, which may read only a field per value.
pub const READS: u64 = 2;

/// How bans go out on the stream: in one field, or a field per value while a collector of
/// the cluster reads no other (an earlier version, during an upgrade).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The ban in one field (`ban`).
    OneField,
    /// A field per value, the form earlier versions wrote and read.
    FieldPerValue,
}

impl Form {
    /// The form every collector can read, from the forms each says it reads (`READS`, or 1
    /// for a heartbeat without it).
    pub fn readable_by(reads: impl IntoIterator<Item = u64>) -> Form {
        if reads.into_iter().all(|r| r >= READS) {
            Form::OneField
        } else {
            Form::FieldPerValue
        }
    }
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
    /// decided it): the flag `r` in the one field (in the older form a field of its own, left
    /// out when false).
    pub republished: bool,
    /// The collector that decided it, when that is not `node`: a ban republished by
    /// another collector (a field of its own, `decided_by`, left out when None; readers of
    /// an earlier version skip it and take `node` for the decider).
    pub decided_by: Option<String>,
    /// Other attacked hosts the ban covers, when a jail that bans where the attack happened
    /// widened it to them (a JSON array; left out when empty, as before it existed).
    pub more_origins: Vec<String>,
    /// Where a ban by hand was told to go (`ban --place`), instead of the jail's placement
    /// (a JSON array of the rules as written; left out for the jail's).
    pub placement: Option<Vec<crate::config::PlacementRule>>,
}

/// `t` moved `ms` later (earlier when negative), never before the Unix epoch.
fn shifted(t: SystemTime, ms: i64) -> SystemTime {
    let by = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        t.checked_add(by).unwrap_or(t)
    } else {
        let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        SystemTime::UNIX_EPOCH + since.saturating_sub(by)
    }
}

impl SharedBan {
    /// The ban with its start and end `ms` later (earlier when negative): from one clock
    /// to another (a collector's and the engine's).
    pub fn shift_clock(&mut self, ms: i64) {
        self.started = shifted(self.started, ms);
        self.expires = self.expires.map(|t| shifted(t, ms));
    }

    /// The stream entry's fields in `form` (a ban whose names one field cannot carry goes
    /// out a field per value: see `encode`), and what only some bans have.
    pub fn fields(&self, form: Form) -> Vec<(&'static str, String)> {
        let one = match form {
            Form::OneField => encode(self),
            Form::FieldPerValue => None,
        };
        let mut fields = match one {
            Some(value) => vec![(FIELD, value)],
            None => self.fields_one_by_one(),
        };
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
        if let Some(decider) = &self.decided_by {
            fields.push(("decided_by", decider.clone()));
        }
        fields
    }

    /// The older form, a field per value: what earlier versions wrote, and still written
    /// for a ban whose names the one field cannot carry (readers refuse those by name).
    fn fields_one_by_one(&self) -> Vec<(&'static str, String)> {
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
        fields
    }

    /// Reads a stream entry's fields, in either form.
    pub fn from_fields(fields: &Fields<'_>) -> Result<SharedBan, String> {
        let mut ban = match value(fields, FIELD) {
            Some(one) => decode(one)?,
            None => SharedBan::from_fields_one_by_one(fields)?,
        };
        ban.more_origins = match text(fields, "more_origins") {
            None => Vec::new(),
            Some(list) => serde_json::from_str(list)
                .map_err(|_| "more_origins is not a list of names".to_string())?,
        };
        ban.placement = match text(fields, "placement") {
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
        };
        ban.decided_by = match field(fields, "decided_by") {
            // A name that goes into this collector's log, as `node` does.
            Some(name) if !crate::parse::printable_name(&name) => {
                return Err("the decided_by has control characters".to_string())
            }
            name => name,
        };
        Ok(ban)
    }

    /// The older form's values (the optional fields are `from_fields`').
    fn from_fields_one_by_one(fields: &Fields<'_>) -> Result<SharedBan, String> {
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
            decided_by: None,
            more_origins: Vec::new(),
            placement: None,
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
    match value(fields, FIELD) {
        Some(one) => node_of(one) == node.as_bytes(),
        None => value(fields, "node") == Some(node.as_bytes()),
    }
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

    /// The stream entry's fields (a ban's carry no `event`, as before unbans were shared;
    /// `form` is a ban's).
    pub fn fields(&self, form: Form) -> Vec<(&'static str, String)> {
        match self {
            Published::Ban(ban) => ban.fields(form),
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

/// The field's value, or None when a name holds a control character (a tab would shift
/// every value after it): such a ban goes out in the older form, which readers refuse by
/// naming the field.
fn encode(ban: &SharedBan) -> Option<String> {
    let names = [&ban.node, &ban.jail, &ban.origin];
    if !names.iter().all(|name| crate::parse::printable_name(name)) {
        return None;
    }
    let flags = if ban.republished { "r" } else { "" };
    Some(format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{flags}\t{}",
        ban.node,
        ban.jail,
        ban.address,
        ban.failures,
        ban.origin,
        millis(ban.started),
        ban.expires.map_or(0, millis),
        ban.sample
    ))
}

/// The collector named first in a value (its own entries a follower skips unread).
fn node_of(value: &[u8]) -> &[u8] {
    let end = memchr::memchr(TAB, value).unwrap_or(value.len());
    value.get(..end).unwrap_or_default()
}

/// Reads a value; the optional fields (`more_origins`, `placement`) are the caller's.
fn decode(value: &[u8]) -> Result<SharedBan, String> {
    let mut head = [&[] as &[u8]; HEAD_VALUES];
    let mut rest = value;
    for (i, slot) in head.iter_mut().enumerate() {
        let Some(tab) = memchr::memchr(TAB, rest) else {
            return Err(format!(
                "{} values where {} and the line",
                i + 1,
                HEAD_VALUES
            ));
        };
        *slot = rest.get(..tab).unwrap_or_default();
        rest = rest.get(tab + 1..).unwrap_or_default();
    }
    let [node, jail, address, failures, origin, started, expires, flags] = head;
    // Names go into this collector's log, as a sender's host name does.
    let name = |what: &str, bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(text) if crate::parse::printable_name(text) => Ok(text.to_string()),
        Ok(_) => Err(format!("the {what} has control characters")),
        Err(_) => Err(format!("the {what} is not UTF-8")),
    };
    let number = |what: &str, bytes: &[u8]| -> Result<u64, String> {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| format!("{what} is not a number"))
    };
    let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    let expires = number("expires", expires)?;
    Ok(SharedBan {
        node: name("node", node)?,
        jail: name("jail", jail)?,
        address: std::str::from_utf8(address)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or("the address is not one")?,
        failures: u32::try_from(number("failures", failures)?).unwrap_or(u32::MAX),
        origin: name("origin", origin)?,
        started: at(number("started", started)?),
        expires: (expires != 0).then(|| at(expires)),
        sample: String::from_utf8_lossy(rest).into_owned(),
        republished: flags.contains(&b'r'),
        decided_by: None,
        more_origins: Vec::new(),
        placement: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> SharedBan {
        SharedBan {
            node: "a".into(),
            jail: "sshd".into(),
            address: "2001:db8::/64".parse().unwrap(),
            failures: 5,
            origin: "web1.example".into(),
            started: SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_123),
            expires: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_600_000)),
            sample: "Failed password\tfor root\r\nfrom 198.51.100.7 \u{fffd}".into(),
            republished: true,
            decided_by: None,
            more_origins: Vec::new(),
            placement: None,
        }
    }

    #[test]
    fn a_ban_moves_between_clocks_by_its_start_and_end() {
        let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        let mut ban = shared();
        ban.shift_clock(-1_200_000);
        assert_eq!(
            (ban.started, ban.expires),
            (at(1_799_998_800_123), Some(at(1_799_999_400_000)))
        );
        ban.shift_clock(1_200_000);
        assert_eq!(
            (ban.started, ban.expires),
            (shared().started, shared().expires)
        );
        let mut permanent = SharedBan {
            expires: None,
            ..shared()
        };
        permanent.shift_clock(5_000);
        assert_eq!(
            (permanent.started, permanent.expires),
            (at(1_800_000_005_123), None)
        );
        // Never before the Unix epoch.
        permanent.shift_clock(i64::MIN);
        assert_eq!(permanent.started, SystemTime::UNIX_EPOCH);
    }

    #[test]
    fn a_shared_ban_survives_its_stream_fields() {
        let ban = SharedBan {
            address: "198.51.100.7".parse().unwrap(),
            origin: "web1".into(),
            republished: false,
            ..shared()
        };
        // As the follower reads them: borrowed name and value pairs.
        let read = |fields: &[(&'static str, String)], check: &dyn Fn(&Fields<'_>)| {
            let pairs: Vec<(&[u8], &[u8])> = fields
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                .collect();
            check(&pairs);
        };
        // In one field, and in the older form earlier versions wrote (still in a stream
        // a collector catches up on after its upgrade).
        for form in [ban.fields(Form::OneField), ban.fields(Form::FieldPerValue)] {
            read(&form, &|fields| {
                assert_eq!(SharedBan::from_fields(fields).unwrap(), ban);
                assert!(from_node(fields, "a"));
                assert!(!from_node(fields, "ab") && !from_node(fields, "sshd"));
            });
        }
        assert_eq!(ban.fields(Form::OneField).len(), 1, "one field");
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
        let older = permanent.fields(Form::FieldPerValue);
        assert!(older.iter().any(|(n, _)| *n == "node") && older.len() > 8);
        read(&older, &|fields| {
            assert_eq!(SharedBan::from_fields(fields).unwrap(), permanent);
        });
        read(&permanent.fields(Form::OneField), &|fields| {
            assert_eq!(SharedBan::from_fields(fields).unwrap(), permanent);
            assert!(SharedBan::from_fields(&fields[1..]).is_err(), "no ban");
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
        read(&unban.fields(Form::OneField), &|fields| {
            assert_eq!(Published::from_fields(fields).unwrap(), unban);
        });
        // A forged name goes out in the older form, and is refused there by name.
        for (name, forged) in [("origin", "web1\nINFO forged"), ("node", "a\u{1b}[2J")] {
            let mut bad = ban.clone();
            *match name {
                "origin" => &mut bad.origin,
                _ => &mut bad.node,
            } = forged.into();
            let fields = bad.fields(Form::OneField);
            assert!(fields.iter().any(|(n, _)| *n == name), "the older form");
            read(&fields, &|fields| {
                let error = SharedBan::from_fields(fields).unwrap_err();
                assert!(error.contains(name), "{error}");
            });
        }
        // A republished ban names its decider in a field of its own, in either form; a
        // forged one is refused by name.
        let republished = SharedBan {
            node: "c".into(),
            republished: true,
            decided_by: Some("b".into()),
            ..ban.clone()
        };
        for form in [
            republished.fields(Form::OneField),
            republished.fields(Form::FieldPerValue),
        ] {
            assert!(form.contains(&("decided_by", "b".to_string())));
            read(&form, &|fields| {
                assert_eq!(SharedBan::from_fields(fields).unwrap(), republished);
                assert!(from_node(fields, "c") && !from_node(fields, "b"));
            });
        }
        let forged = SharedBan {
            decided_by: Some("b\nINFO forged".into()),
            ..republished.clone()
        };
        read(&forged.fields(Form::OneField), &|fields| {
            let error = SharedBan::from_fields(fields).unwrap_err();
            assert!(error.contains("decided_by"), "{error}");
        });
        let mut odd = ban.fields(Form::OneField);
        odd.push(("event", "renamed".into()));
        read(&odd, &|fields| {
            assert!(Published::from_fields(fields).is_err(), "an unknown event");
        });
    }

    #[test]
    fn bans_go_out_in_one_field_only_when_every_collector_reads_it() {
        assert_eq!(Form::readable_by([READS, READS]), Form::OneField);
        assert_eq!(Form::readable_by([]), Form::OneField, "alone");
        assert_eq!(Form::readable_by([READS, 1]), Form::FieldPerValue);
        assert_eq!(Form::readable_by([READS + 1, READS]), Form::OneField);
    }

    #[test]
    fn a_ban_survives_its_one_field_and_its_line_may_hold_tabs() {
        let value = encode(&shared()).unwrap();
        assert_eq!(decode(value.as_bytes()).unwrap(), shared());
        assert_eq!(node_of(value.as_bytes()), b"a");
        let permanent = SharedBan {
            expires: None,
            republished: false,
            sample: String::new(),
            ..shared()
        };
        let value = encode(&permanent).unwrap();
        assert_eq!(decode(value.as_bytes()).unwrap(), permanent);
    }

    #[test]
    fn a_name_with_a_control_character_is_not_written_and_not_read() {
        for forged in ["web1\tx", "web1\nINFO forged", "\u{1b}[2J"] {
            let mut bad = shared();
            bad.origin = forged.into();
            assert_eq!(encode(&bad), None, "{forged:?}");
        }
        let value = encode(&shared()).unwrap();
        let forged = value.replacen("web1.example", "web1\u{1b}[2J", 1);
        let error = decode(forged.as_bytes()).unwrap_err();
        assert!(error.contains("origin"), "{error}");
    }

    #[test]
    fn a_value_cut_short_or_garbled_is_refused_by_name() {
        let value = encode(&shared()).unwrap();
        let cut = value.split('\t').take(4).collect::<Vec<_>>().join("\t");
        assert!(decode(cut.as_bytes()).unwrap_err().contains("values"));
        let garbled = value.replacen("1800000000123", "soon", 1);
        assert!(decode(garbled.as_bytes()).unwrap_err().contains("started"));
        let not_an_address = value.replacen("2001:db8::/64", "web2", 1);
        assert!(decode(not_an_address.as_bytes())
            .unwrap_err()
            .contains("address"));
        assert!(decode(b"").is_err());
        assert!(decode(&[0xff, b'\t'].repeat(9)).is_err());
    }
}
