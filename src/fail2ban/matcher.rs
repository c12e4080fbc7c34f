//! Running a loaded fail2ban filter over a stream of lines, with fail2ban's state.
//!
//! Owns the per-stream state fail2ban keeps: the `maxlines` buffer for multi-line regexes and
//! the `<F-MLFID>` cache that joins lines of one connection (`<F-NOFAIL>`, `<F-MLFFORGET>`,
//! `<F-MLFGAINED>`). It decides matched / host / user / ignored per line; it does not count
//! failures over time (the jail's window does) and never bans.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::filter::{Fail2banFilter, LogType};
use super::pyre::{Groups, PyMatch};

/// Connection ids remembered for `<F-MLFID>` at most (oldest forgotten first): bounds memory
/// when connections never log their end.
const MLFID_CAPACITY: usize = 4096;

/// The verdict for one line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineOutcome {
    /// A failure was found (not vetoed, not a `<F-NOFAIL>` helper match).
    pub matched: bool,
    /// The failure's host: a normalised address, or a name / failure id as captured.
    pub host: Option<String>,
    /// The `user` capture (or its `alt_user` fallback).
    pub user: Option<String>,
    /// A failregex matched but an ignoreregex vetoed it.
    pub ignored: bool,
    /// Which failregex matched.
    pub failregex: Option<usize>,
}

#[derive(Debug, Default)]
struct MlfEntry {
    /// Position in the eviction order (the last time the connection logged).
    seq: u64,
    groups: Groups,
    users: BTreeSet<String>,
    /// A failure was seen before the connection's address was known.
    pending: bool,
}

/// A filter plus the state of one input stream.
#[derive(Debug)]
pub struct Fail2banMatcher {
    filter: Arc<Fail2banFilter>,
    /// The last `maxlines` lines with their dates cut out (unused when `maxlines` is 1: the
    /// line itself is the text then).
    buffer: Vec<String>,
    mlfid: HashMap<String, MlfEntry>,
    /// Connection ids oldest first, with the `seq` they had when queued; an id logged again
    /// is queued again and its older queue entries are skipped when they come up (so a
    /// touch costs O(1) instead of a search of the queue).
    mlfid_order: VecDeque<(u64, String)>,
    mlfid_seq: u64,
}

impl Fail2banMatcher {
    /// A matcher with empty state.
    pub fn new(filter: Arc<Fail2banFilter>) -> Self {
        Fail2banMatcher {
            filter,
            buffer: Vec::new(),
            mlfid: HashMap::new(),
            mlfid_order: VecDeque::new(),
            mlfid_seq: 0,
        }
    }

    /// The filter.
    pub fn filter(&self) -> &Arc<Fail2banFilter> {
        &self.filter
    }

    /// A line as read from a log file. As in fail2ban, the date is found and cut out first;
    /// a line without a date cannot be a failure (journal logtypes carry the date apart, so
    /// there it is optional).
    pub fn file_line(&mut self, line: &str) -> LineOutcome {
        let line = line.trim_end_matches(['\r', '\n']);
        let date_required = matches!(
            self.filter.logtype,
            LogType::File | LogType::Rfc5424 | LogType::Other(_)
        );
        if !date_required {
            return self.process(line.to_string(), true);
        }
        match self.filter.dates.find(line) {
            Some((s, e)) => {
                let text = without_span(line, s, e);
                self.process(text, true)
            }
            None => self.process(line.to_string(), false),
        }
    }

    /// A message whose time is already known (a syslog record rebuilt as
    /// `host prog[pid]: message`): a date in it is cut out if the filter's datepattern finds
    /// one, but none is required.
    pub fn dated_line(&mut self, line: &str) -> LineOutcome {
        let line = line.trim_end_matches(['\r', '\n']);
        match self.filter.dates.find(line) {
            Some((s, e)) => {
                let text = without_span(line, s, e);
                self.process(text, true)
            }
            None => self.process(line.to_string(), true),
        }
    }

    /// The buffered lines as one text, each ending in a line break (`maxlines` > 1).
    fn buffer_text(&self) -> String {
        let mut t = self.buffer.join("\n");
        t.push('\n');
        t
    }

    fn ignored(&self, text: &str) -> bool {
        self.filter.ignoreregex.iter().any(|re| re.is_match(text))
    }

    fn process(&mut self, line: String, has_date: bool) -> LineOutcome {
        let filter = Arc::clone(&self.filter);
        let mut outcome = LineOutcome::default();
        let mut text = if filter.maxlines > 1 {
            self.buffer.push(line);
            let excess = self.buffer.len().saturating_sub(filter.maxlines);
            self.buffer.drain(..excess);
            self.buffer_text()
        } else {
            line
        };
        // fail2ban checks ignoreregex up front when there are few of them (a shortcut with
        // the same verdict: the line cannot be a failure).
        if !filter.ignoreregex.is_empty()
            && filter.ignoreregex.len() + 2 < filter.failregex.len()
            && self.ignored(&text)
        {
            return outcome;
        }
        let mut pre = Groups::default();
        if let Some(prefregex) = &filter.prefregex {
            let Some(m) = prefregex.search(&text) else {
                return outcome;
            };
            pre = m.groups;
            if let Some(Some(content)) = pre.remove("content") {
                if !content.is_empty() {
                    if filter.maxlines > 1 {
                        self.buffer = vec![content];
                        text = self.buffer_text();
                    } else {
                        text = content;
                    }
                }
            }
        }
        let candidates = filter.failset.candidates(&text);
        for (index, re) in filter.failregex.iter().enumerate() {
            if !candidates.may_match(index) {
                continue;
            }
            let Some(m) = re.search(&text) else {
                continue;
            };
            if self.ignored(&text) {
                outcome.ignored = true;
                outcome.failregex = Some(index);
                return outcome;
            }
            if !has_date {
                // fail2ban: "found a match but no valid date/time" - not a failure.
                continue;
            }
            if filter.maxlines > 1 {
                self.drop_matched_lines(&text, &m);
            }
            // Captures of the failregex complete the prefregex's; a group that did not take
            // part does not erase a prefregex capture (fail2ban 1.0 did, and lost the address
            // of e.g. dovecot 2.4 lines; later releases fixed that).
            let mut fail = pre.clone();
            for (k, v) in m.groups {
                if v.is_some() || !fail.contains_key(&k) {
                    fail.insert(k, v);
                }
            }
            merge_alternatives(&mut fail);
            let mlfid = value(&fail, "mlfid").map(str::to_string);
            if let Some(id) = &mlfid {
                fail = self.merge_mlfid(id, fail);
            }
            if value(&fail, "nofail").is_some() {
                return outcome;
            }
            let Some(host) = host_of(&fail) else {
                // A connection's failure without its address yet: it is pending until a
                // later line of the connection names the address.
                if let Some(entry) = mlfid.as_ref().and_then(|id| self.mlfid.get_mut(id)) {
                    entry.pending = true;
                }
                return outcome;
            };
            outcome.matched = true;
            outcome.host = Some(host);
            outcome.user = value(&fail, "user").map(str::to_string);
            outcome.failregex = Some(index);
            return outcome;
        }
        outcome
    }

    /// After a multi-line match, the lines it used leave the buffer (lines it skipped with
    /// `<SKIPLINES>` stay).
    fn drop_matched_lines(&mut self, text: &str, m: &PyMatch) {
        // The line the match starts in (a match starting at a line break starts after it)
        // and the line its last character is in.
        let line_start = if text.get(m.start..).is_some_and(|t| t.starts_with('\n')) {
            m.start + 1
        } else {
            text.get(..m.start)
                .and_then(|t| t.rfind('\n'))
                .map_or(0, |i| i + 1)
        };
        let mut last_char = m.end.saturating_sub(1).max(m.start);
        while !text.is_char_boundary(last_char) {
            last_char -= 1;
        }
        let line_end = text
            .get(last_char..)
            .and_then(|t| t.find('\n'))
            .map_or(text.len(), |i| last_char + i + 1);
        let first = newlines_before(text, line_start);
        let last = newlines_before(text, line_end).min(self.buffer.len());
        let skipped: Vec<String> = m
            .groups
            .iter()
            .filter(|(k, _)| k.starts_with("skiplines"))
            .filter_map(|(_, v)| v.as_deref())
            .flat_map(|v| v.split('\n').filter(|l| !l.is_empty()).map(str::to_string))
            .collect();
        let mut kept: Vec<String> = self.buffer[..first.min(last)].to_vec();
        kept.extend(
            self.buffer[first.min(last)..last]
                .iter()
                .filter(|l| skipped.contains(l))
                .cloned(),
        );
        kept.extend(self.buffer[last..].iter().cloned());
        self.buffer = kept;
    }

    /// Keeps at most [`MLFID_CAPACITY`] connections, forgetting the least recently logged,
    /// and the queue within twice that (stale entries of re-logged ids are dropped).
    fn evict_mlfids(&mut self) {
        let live = |map: &HashMap<String, MlfEntry>, seq: u64, id: &str| {
            map.get(id).is_some_and(|e| e.seq == seq)
        };
        while self.mlfid.len() > MLFID_CAPACITY {
            let Some((seq, id)) = self.mlfid_order.pop_front() else {
                break;
            };
            if live(&self.mlfid, seq, &id) {
                self.mlfid.remove(&id);
            }
        }
        if self.mlfid_order.len() > 2 * MLFID_CAPACITY {
            let map = &self.mlfid;
            self.mlfid_order.retain(|(seq, id)| live(map, *seq, id));
        }
    }

    /// Joins this line's captures with what the connection `id` logged before.
    fn merge_mlfid(&mut self, id: &str, fail: Groups) -> Groups {
        let gained = value(&fail, "mlfgained").is_some();
        let mut nofail = value(&fail, "nofail").is_some() || gained;
        let forget = value(&fail, "mlfforget").is_some();
        let mut entry = self.mlfid.remove(id).unwrap_or_default();
        if let Some(user) = value(&entry.groups, "user") {
            entry.users.insert(user.to_string());
        }
        if let Some(user) = value(&fail, "user") {
            entry.users.insert(user.to_string());
        }
        for (k, v) in fail {
            if v.is_some() {
                entry.groups.insert(k, v);
            }
        }
        entry.groups.remove("mlfforget");
        entry.groups.remove("mlfgained");
        entry.groups.remove("nofail");
        // Several user names tried over one connection is a failure even when each attempt
        // alone is only a helper (`<F-NOFAIL>`) line, and even when the last one got in.
        if nofail && entry.users.len() > 1 {
            nofail = false;
        }
        // A failure that waited for the address is reported by the line that brings it.
        if nofail && entry.pending && host_of(&entry.groups).is_some() {
            nofail = false;
            entry.pending = false;
        }
        let mut merged = entry.groups.clone();
        if nofail {
            merged.insert(Arc::from("nofail"), Some("1".into()));
        }
        if !forget {
            self.mlfid_seq += 1;
            entry.seq = self.mlfid_seq;
            self.mlfid_order.push_back((entry.seq, id.to_string()));
            self.mlfid.insert(id.to_string(), entry);
            self.evict_mlfids();
        }
        merged
    }
}

fn value<'a>(groups: &'a Groups, key: &str) -> Option<&'a str> {
    groups.value(key)
}

/// `alt_user` (or `alt_user_2`) fills `user` when that is empty.
fn merge_alternatives(groups: &mut Groups) {
    let mut alts: Vec<(String, String)> = groups
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix("alt_")?;
            let target = match rest.rsplit_once('_') {
                Some((t, n)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => t,
                _ => rest,
            };
            Some((target.to_string(), v.clone()?))
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    alts.sort();
    for (target, v) in alts {
        if value(groups, &target).is_none_or(str::is_empty) {
            groups.insert(Arc::from(target), Some(v));
        }
    }
}

/// The failure's host: ip4, ip6, dns, then the failure id (a failure id different from the
/// address wins, as in fail2ban).
fn host_of(fail: &Groups) -> Option<String> {
    let cidr = value(fail, "cidr").and_then(|c| c.parse::<u8>().ok());
    let address = if let Some(v4) = value(fail, "ip4") {
        Some(match v4.parse::<Ipv4Addr>() {
            Ok(ip) => with_prefix(IpAddr::V4(ip), cidr),
            Err(_) => v4.to_string(),
        })
    } else if let Some(v6) = value(fail, "ip6") {
        Some(match v6.parse::<Ipv6Addr>() {
            Ok(ip) => with_prefix(IpAddr::V6(ip), cidr),
            Err(_) => v6.to_string(),
        })
    } else {
        value(fail, "dns").map(str::to_string)
    };
    let fid = value(fail, "fid");
    match (address, fid) {
        (Some(a), Some(f)) if a != f => Some(f.to_string()),
        (Some(a), _) => Some(a),
        (None, Some(f)) => Some(f.to_string()),
        (None, None) => None,
    }
}

fn with_prefix(ip: IpAddr, cidr: Option<u8>) -> String {
    let full = if ip.is_ipv4() { 32 } else { 128 };
    match cidr {
        Some(p) if p < full => match ipnet::IpNet::new(ip, p) {
            Ok(net) => net.trunc().to_string(),
            Err(_) => ip.to_string(),
        },
        _ => ip.to_string(),
    }
}

/// `line` without the bytes `start..end` (a date the datepattern found).
fn without_span(line: &str, start: usize, end: usize) -> String {
    let before = line.get(..start).unwrap_or_default();
    let after = line.get(end..).unwrap_or_default();
    format!("{before}{after}")
}

/// Line breaks in the first `at` bytes of `text`.
fn newlines_before(text: &str, at: usize) -> usize {
    let bytes = text.as_bytes();
    memchr::memchr_iter(b'\n', bytes.get(..at).unwrap_or(bytes)).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fail2ban::{load, FilterSpec};

    fn filter(text: &str, opts: &str) -> Fail2banMatcher {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.conf");
        std::fs::write(&p, text).unwrap();
        let spec = FilterSpec::parse(&format!("{}{opts}", p.display())).unwrap();
        Fail2banMatcher::new(Arc::new(load(&spec).unwrap()))
    }

    #[test]
    fn mlfid_joins_lines_of_one_connection() {
        let mut m = filter(
            "[Definition]\nprefregex = ^<F-MLFID>\\s*\\S+ prog\\[\\d+\\]:</F-MLFID> <F-CONTENT>.+</F-CONTENT>$\nfailregex = ^<F-NOFAIL>peer is</F-NOFAIL> <HOST>\n ^Too many failures\n ^<F-MLFFORGET>Closed</F-MLFFORGET>\n",
            "",
        );
        assert!(
            !m.file_line("Jan 23 21:59:59 h prog[1]: peer is 192.0.2.9")
                .matched
        );
        let out = m.file_line("Jan 23 21:59:59 h prog[1]: Too many failures");
        assert!(out.matched);
        assert_eq!(out.host.as_deref(), Some("192.0.2.9"));
        assert!(
            !m.file_line("Jan 23 21:59:59 h prog[2]: Too many failures")
                .matched
        );
        m.file_line("Jan 23 21:59:59 h prog[1]: Closed");
        assert!(
            !m.file_line("Jan 23 21:59:59 h prog[1]: Too many failures")
                .matched
        );
    }

    #[test]
    fn connection_cache_is_bounded_and_keeps_recent_ids() {
        let mut m = filter(
            "[Definition]\nprefregex = ^<F-MLFID>\\s*c\\d+:</F-MLFID> <F-CONTENT>.+</F-CONTENT>$\nfailregex = ^<F-NOFAIL>from</F-NOFAIL> <HOST>\n ^fail$\n",
            "",
        );
        m.file_line("Jan 23 21:59:59 c0: from 192.0.2.1");
        for i in 1..=MLFID_CAPACITY + 10 {
            m.file_line(&format!("Jan 23 21:59:59 c{i}: from 192.0.2.2"));
            // c0 keeps logging, so it stays while older connections are forgotten.
            if i % 100 == 0 {
                m.file_line("Jan 23 21:59:59 c0: from 192.0.2.1");
            }
        }
        assert!(m.mlfid.len() <= MLFID_CAPACITY);
        assert!(m.mlfid_order.len() <= 2 * MLFID_CAPACITY + 1);
        assert_eq!(
            m.file_line("Jan 23 21:59:59 c0: fail").host.as_deref(),
            Some("192.0.2.1")
        );
        assert!(
            !m.file_line("Jan 23 21:59:59 c1: fail").matched,
            "c1 was forgotten"
        );
        assert!(
            m.file_line(&format!("Jan 23 21:59:59 c{}: fail", MLFID_CAPACITY))
                .matched
        );
    }

    #[test]
    fn maxlines_buffers_and_consumes() {
        let mut m = filter(
            "[Definition]\nmaxlines = 2\nfailregex = ^\\s*login from <HOST>\\n\\s*denied$\n",
            "",
        );
        assert!(!m.file_line("Jan 23 21:59:59 login from 192.0.2.1").matched);
        let out = m.file_line("Jan 23 21:59:59 denied");
        assert_eq!(out.host.as_deref(), Some("192.0.2.1"));
        assert!(!m.file_line("Jan 23 21:59:59 denied").matched);
    }

    #[test]
    fn multi_line_matches_over_multibyte_text() {
        let mut m = filter(
            "[Definition]\nmaxlines = 3\nfailregex = ^\\s*ü from <HOST>\\n\\s*é$\n",
            "",
        );
        assert!(!m.file_line("Jan 23 21:59:59 ü from 192.0.2.3").matched);
        assert!(m.file_line("Jan 23 21:59:59 é").matched);
        assert!(!m.file_line("Jan 23 21:59:59 é").matched, "lines used once");
    }

    #[test]
    fn dates_ids_and_prefixes() {
        let mut m = filter(
            "[Definition]\nfailregex = ^\\s*bad <F-ID>\\S+</F-ID>(?: net <SUBNET>)?$\n",
            "",
        );
        assert!(!m.file_line("bad token").matched, "no date, no failure");
        assert_eq!(
            m.file_line("Jan 23 21:59:59 bad token").host.as_deref(),
            Some("token")
        );
        let mut m = filter("[Definition]\nfailregex = ^\\s*net <SUBNET>$\n", "");
        assert_eq!(
            m.file_line("Jan 23 21:59:59 net 192.0.2.77/24")
                .host
                .as_deref(),
            Some("192.0.2.0/24")
        );
        let mut m = filter(
            "[Definition]\nfailregex = ^h prog: u=<F-ALT_USER>\\S+</F-ALT_USER> <HOST>$\n",
            "[logtype=journal]",
        );
        let out = m.file_line("h prog: u=eve 2001:db8:0::1");
        assert_eq!(out.host.as_deref(), Some("2001:db8::1"));
        assert_eq!(out.user.as_deref(), Some("eve"));
    }
}
