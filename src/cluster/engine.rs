//! What the collectors keep on the engine, and the calls that read and write it:
//!
//! - `PREFIX:f:{ADDRESS}:JAIL`: a sorted set of one attacker's failures in one jail (scores:
//!   Unix milliseconds), and `PREFIX:c:{ADDRESS}:JAIL`, the claim of the collector whose
//!   failure made the count reach maxretry. The braces are a hash tag: every key of one
//!   attacker lands on one Redis Cluster slot, so the counting script touches one slot. A
//!   jail that counts per origin host has both per sender (`...:JAIL@ORIGIN`), and
//!   `PREFIX:o:{ADDRESS}:JAIL` lists them, so that a lift by hand finds them.
//! - `PREFIX:bans`: a Stream of the bans decided anywhere (resumable by id).
//! - `PREFIX:nodes`: a hash of each collector's heartbeat and reading position.
//! - `PREFIX:epoch`: a random value; its loss means the engine lost its data.
//!
//! Owns the key names, the script and the field layout of the stream. Nothing here decides
//! a ban: the script only says which failure reached maxretry first.

use std::time::{SystemTime, UNIX_EPOCH};

use super::resp::{self, Connection, EngineError, Reply};
use crate::config::JailName;
use crate::target::Target;

/// Adds one failure and says whether it made the count reach maxretry first.
/// KEYS: failures, claim, and for a jail counting per origin the list of the attacker's
/// per-origin keys. ARGV: the failure's age when sent (ms), findtime (ms), maxretry,
/// weight, what the failure counts as (its id, or its journal entry's), the claim's
/// lifetime (ms), the failure's id (what a claim it takes holds).
/// Times are the engine's (`TIME`): the collectors' clocks may disagree, and the window on
/// one collector's clock running ahead would drop the others' failures as too old. The
/// age is one collector's difference of two readings of its own clock, whatever its skew.
/// Returns {count, 1 if this failure holds the claim, else 0}, or {count, 2, the holder's
/// failure id} when another failure holds it.
/// Idempotent per failure id: a failure sent again (its first reply was lost to a timeout,
/// but the engine ran it) is not counted twice, and if it took the claim the first time, it
/// is told so again. A journal entry's failure counts once whichever collectors it reached.
const COUNT_SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local at = now - tonumber(ARGV[1])
local findtime = tonumber(ARGV[2])
local maxretry = tonumber(ARGV[3])
local weight = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - findtime)
if at > now - findtime then
  for i = 1, weight do
    redis.call('ZADD', KEYS[1], at, ARGV[5] .. ':' .. i)
  end
end
redis.call('PEXPIRE', KEYS[1], findtime)
if KEYS[3] then
  redis.call('SADD', KEYS[3], KEYS[1], KEYS[2])
  redis.call('PEXPIRE', KEYS[3], math.max(findtime, tonumber(ARGV[6])))
end
local count = redis.call('ZCARD', KEYS[1])
if count >= maxretry then
  if redis.call('SET', KEYS[2], ARGV[7], 'NX', 'PX', ARGV[6]) then
    redis.call('DEL', KEYS[1])
    return {count, 1}
  end
end
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[7] then
  return {count, 1}
end
if holder then
  return {count, 2, holder}
end
return {count, 0}
";

/// `key` in lower-case hex.
fn hex(key: [u8; 16]) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0; 32];
    for (i, byte) in key.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(byte >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
    }
    out
}

/// The kind of an attacker's key: its failures in a jail, the claim on it there, or the
/// list of its per-origin keys there.
const FAILURES: &[u8] = b"f";
const CLAIM: &[u8] = b"c";
const PER_ORIGIN: &[u8] = b"o";

/// The parts of an attacker's key, `PREFIX:KIND:{TARGET}:JAIL`, for the count calls and the
/// lift alike: the hash tag puts every key of one attacker on one slot.
fn attacker_key<'a>(
    prefix: &'a [u8],
    kind: &'a [u8],
    target: &'a [u8],
    jail: &'a [u8],
) -> [&'a [u8]; 7] {
    [prefix, b":", kind, b":{", target, b"}:", jail]
}

/// Reads the count script's `{count, claimed}`.
fn counted(reply: Reply) -> Result<Counted, EngineError> {
    let items = reply.items();
    let (Some(count), Some(claimed)) = (
        items.first().and_then(Reply::int),
        items.get(1).and_then(Reply::int),
    ) else {
        return Err(EngineError::Protocol(format!(
            "the count script answered {reply:?}"
        )));
    };
    // The holder's id is `NODE:STARTED_MS:SEQUENCE`, and node names have no colon.
    let holder = (claimed == 2)
        .then(|| items.get(2).and_then(Reply::text))
        .flatten()
        .map(|id| id.split(':').next().unwrap_or_default().to_string());
    Ok(Counted {
        count: u32::try_from(count).unwrap_or(u32::MAX),
        claimed: claimed == 1,
        holder,
    })
}

/// Unix milliseconds of `t`.
pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The milliseconds part of a stream id (`1733280000000-3`).
pub fn id_millis(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// Keys and calls of one cluster (`prefix`).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// What the count script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// Failures of the attacker in the jail's window, across collectors.
    pub count: u32,
    /// This failure reached maxretry first: the ban is this collector's to make.
    pub claimed: bool,
    /// The collector whose failure holds the attacker's claim, when not this failure (that
    /// collector bans; no failure can take the claim until it lapses, one findtime after it
    /// was taken). It can be this collector, by an earlier failure.
    pub holder: Option<String>,
}

/// One failure, as the script takes it.
#[derive(Debug, Clone, Copy)]
pub struct CountArgs<'a> {
    /// The jail.
    pub jail: &'a str,
    /// The attacker.
    pub target: Target,
    /// When the failure happened, on this collector's clock (Unix milliseconds): only its
    /// age at the call reaches the engine.
    pub at_ms: u64,
    /// The jail's findtime.
    pub findtime_ms: u64,
    /// The jail's maxretry.
    pub maxretry: u32,
    /// Attempts the line counted.
    pub weight: u32,
    /// How long a claim it takes holds (the jail's findtime, or its bantime if shorter:
    /// the attacker's next spell can be claimed again).
    pub claim_ms: u64,
    /// The failure's id, unique in the cluster and the same when it is sent again.
    pub member: FailureId<'a>,
    /// The sender, when the jail counts per origin host: the attacker's count and claim are
    /// then that sender's, on every collector it reaches.
    pub origin: Option<&'a str>,
}

/// A failure's id in the cluster: the collector, when its run started, and the failure's
/// number in that run (`NODE:STARTED_MS:SEQUENCE`, what a claim it takes holds). It counts
/// as that id, or, from a journal entry, as `j:` and the entry's key in hex: an uploader
/// that failed over resends entries the first collector may have counted already.
#[derive(Debug, Clone, Copy)]
pub struct FailureId<'a> {
    /// The collector.
    pub node: &'a str,
    /// When its run started (Unix milliseconds).
    pub started_ms: u64,
    /// The failure's number in the run.
    pub sequence: u64,
    /// The journal entry it came from, the same on every collector.
    pub entry: Option<[u8; 16]>,
}

impl Keys {
    /// The keys of cluster `prefix`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The stream of bans.
    pub fn bans(&self) -> String {
        format!("{}:bans", self.prefix)
    }

    /// The heartbeat hash.
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// The epoch key.
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// Loads the count script; its SHA1.
    pub async fn load_script(&self, conn: &mut Connection) -> Result<String, EngineError> {
        conn.call(&[b"SCRIPT", b"LOAD", COUNT_SCRIPT.as_bytes()])
            .await?
            .text()
            .ok_or_else(|| EngineError::Protocol("SCRIPT LOAD answered no SHA".into()))
    }

    /// Counts `failures` in one round trip, their answers in order into `counted` (Err:
    /// the first reply that was not the script's; every reply is read all the same, so the
    /// connection stays in step). `now` is this collector's clock, which their `at_ms` are
    /// on. `commands` is the buffer they are encoded in, kept by the
    /// caller between calls: a storm's batches are half a megabyte each. Loads the script
    /// again if the engine lost it.
    pub async fn count_all(
        &self,
        conn: &mut Connection,
        sha: &mut String,
        now: SystemTime,
        failures: &[CountArgs<'_>],
        commands: &mut Vec<u8>,
        counted: &mut Vec<Counted>,
    ) -> Result<(), EngineError> {
        let now = millis(now);
        let mut reloaded = false;
        loop {
            self.count_commands(sha, now, failures, commands);
            counted.clear();
            let mut first_error = None;
            conn.pipeline_each(commands, failures.len(), |reply| {
                match reply.and_then(self::counted) {
                    Ok(answer) => counted.push(answer),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            })
            .await?;
            match first_error {
                None => return Ok(()),
                // The engine restarted: the script is loaded again and the batch sent again
                // (a NOSCRIPT reply ran nothing; an engine that lost its script lost the
                // counts of this batch's others too).
                Some(EngineError::Server(e)) if e.starts_with("NOSCRIPT") && !reloaded => {
                    *sha = self.load_script(conn).await?;
                    reloaded = true;
                }
                Some(e) => return Err(e),
            }
        }
    }

    /// One EVALSHA per failure, written straight into one buffer (a storm sends hundreds
    /// per round trip; building each argument as its own string cost more than the call).
    fn count_commands(
        &self,
        sha: &str,
        now_ms: u64,
        failures: &[CountArgs<'_>],
        out: &mut Vec<u8>,
    ) {
        use std::fmt::Write as _;
        out.clear();
        // What every call starts with: the command, the script and its two keys.
        let head = |keys: &[u8]| {
            let mut head = Vec::with_capacity(64);
            resp::array_header(&mut head, 10 + usize::from(keys[0] - b'0'));
            resp::bulk(&mut head, b"EVALSHA");
            resp::bulk(&mut head, sha.as_bytes());
            resp::bulk(&mut head, keys);
            head
        };
        let (shared, per_origin) = (head(b"2"), head(b"3"));
        let prefix = self.prefix.as_bytes();
        let mut target = String::with_capacity(48);
        for args in failures {
            target.clear();
            // Writing to a String cannot fail.
            let _ = write!(target, "{}", args.target);
            let (target, jail) = (target.as_bytes(), args.jail.as_bytes());
            let ttl = args.claim_ms.max(1);
            match args.origin {
                None => {
                    out.extend_from_slice(&shared);
                    resp::bulk_parts(out, &attacker_key(prefix, FAILURES, target, jail));
                    resp::bulk_parts(out, &attacker_key(prefix, CLAIM, target, jail));
                }
                Some(origin) => {
                    out.extend_from_slice(&per_origin);
                    for kind in [FAILURES, CLAIM] {
                        let key = attacker_key(prefix, kind, target, jail);
                        resp::bulk_parts(out, &[&key[..], &[b"@", origin.as_bytes()]].concat());
                    }
                    resp::bulk_parts(out, &attacker_key(prefix, PER_ORIGIN, target, jail));
                }
            }
            // A failure after `now` (the clock stepped back meanwhile) is new.
            resp::bulk_number(out, now_ms.saturating_sub(args.at_ms));
            resp::bulk_number(out, args.findtime_ms);
            resp::bulk_number(out, u64::from(args.maxretry));
            resp::bulk_number(out, u64::from(args.weight));
            let member = args.member;
            let (mut started, mut sequence) = ([0; 20], [0; 20]);
            let id = [
                member.node.as_bytes(),
                b":",
                resp::decimal(member.started_ms, &mut started),
                b":",
                resp::decimal(member.sequence, &mut sequence),
            ];
            match member.entry {
                Some(entry) => resp::bulk_parts(out, &[b"j:", &hex(entry)]),
                None => resp::bulk_parts(out, &id),
            }
            resp::bulk_number(out, ttl);
            resp::bulk_parts(out, &id);
        }
    }

    /// Lifts the claims and counts of `target` in `jails` (per sender too, for jails counting
    /// per origin): an address lifted by hand is the operator's word for the whole cluster, so
    /// its return is counted afresh and the next collector to ban it holds the claim. Two
    /// round trips (the per-origin lists, then one DEL): the keys share the attacker's hash
    /// tag.
    pub async fn lift(
        &self,
        conn: &mut Connection,
        target: Target,
        jails: &[JailName],
    ) -> Result<(), EngineError> {
        if jails.is_empty() {
            return Ok(());
        }
        let target = target.to_string();
        let key = |kind: &[u8], jail: &JailName| {
            attacker_key(
                self.prefix.as_bytes(),
                kind,
                target.as_bytes(),
                jail.as_str().as_bytes(),
            )
            .concat()
        };
        let lists: Vec<Vec<u8>> = jails.iter().map(|jail| key(PER_ORIGIN, jail)).collect();
        let mut keys: Vec<Vec<u8>> = jails
            .iter()
            .flat_map(|jail| [key(FAILURES, jail), key(CLAIM, jail)])
            .collect();
        // The per-origin keys of jails counting per sender, listed first: one round trip for
        // every jail's list, then one DEL for all.
        let mut reads = Vec::new();
        for list in &lists {
            resp::encode_into(&mut reads, &[b"SMEMBERS", list.as_slice()]);
        }
        for members in conn.pipeline_encoded(&reads, lists.len()).await? {
            keys.extend(
                members?
                    .items()
                    .iter()
                    .filter_map(Reply::text)
                    .map(String::into_bytes),
            );
        }
        keys.extend(lists);
        let mut args: Vec<&[u8]> = vec![b"DEL"];
        args.extend(keys.iter().map(Vec::as_slice));
        conn.call(&args).await?;
        Ok(())
    }

    /// Publishes one entry per item of `entries` on the ban stream (capped near `cap`
    /// entries), in order, in one round trip. On an error some of them may be on the stream
    /// already; sending them again only adds entries every collector adopts once.
    pub async fn publish(
        &self,
        conn: &mut Connection,
        entries: &[Vec<(&str, String)>],
        cap: usize,
    ) -> Result<(), EngineError> {
        let key = self.bans();
        let cap = cap.to_string();
        let mut bytes = Vec::new();
        for fields in entries {
            resp::array_header(&mut bytes, 6 + 2 * fields.len());
            for arg in [
                b"XADD",
                key.as_bytes(),
                b"MAXLEN",
                b"~",
                cap.as_bytes(),
                b"*",
            ] {
                resp::bulk(&mut bytes, arg);
            }
            for (name, value) in fields {
                resp::bulk(&mut bytes, name.as_bytes());
                resp::bulk(&mut bytes, value.as_bytes());
            }
        }
        for reply in conn.pipeline_encoded(&bytes, entries.len()).await? {
            if reply?.text().is_none() {
                return Err(EngineError::Protocol("XADD answered no id".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_call_names_the_attackers_keys_under_one_hash_tag() {
        let keys = Keys::new("s2b");
        let member = FailureId {
            node: "a",
            started_ms: 17,
            sequence: 4,
            entry: None,
        };
        let failure = CountArgs {
            jail: "sshd",
            target: "198.51.100.7".parse().unwrap(),
            at_ms: 1000,
            findtime_ms: 600_000,
            claim_ms: 600_000,
            maxretry: 5,
            weight: 1,
            member,
            origin: None,
        };
        let mut bytes = b"left from the batch before".to_vec();
        keys.count_commands("0123", 2000, &[failure, failure], &mut bytes);
        let one = resp::encode(&[
            b"EVALSHA",
            b"0123",
            b"2",
            b"s2b:f:{198.51.100.7}:sshd",
            b"s2b:c:{198.51.100.7}:sshd",
            b"1000",
            b"600000",
            b"5",
            b"1",
            b"a:17:4",
            b"600000",
            b"a:17:4",
        ]);
        assert_eq!(bytes, [one.clone(), one].concat());
        // Only the age goes: a failure stamped after the batch's `now` (the clock stepped
        // back) is new.
        keys.count_commands("0123", 500, &[failure], &mut bytes);
        assert!(
            String::from_utf8_lossy(&bytes)
                .contains("}:sshd\r\n$1\r\n0\r\n$6\r\n600000\r\n$1\r\n5\r\n"),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
        // From a journal entry: it counts as the entry, its claim is still this failure's.
        let mut entry = [0u8; 16];
        entry[0] = 0xab;
        entry[15] = 0x01;
        let journal = CountArgs {
            member: FailureId {
                entry: Some(entry),
                ..member
            },
            ..failure
        };
        keys.count_commands("0123", 2000, &[journal], &mut bytes);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(
                "$34\r\nj:ab000000000000000000000000000001\r\n$6\r\n600000\r\n$6\r\na:17:4\r\n"
            ),
            "{text:?}"
        );
        // A jail counting per origin: the sender's own keys, and the list of them.
        let per_origin = CountArgs {
            origin: Some("192.0.2.4"),
            ..failure
        };
        keys.count_commands("0123", 2000, &[per_origin], &mut bytes);
        let sender = resp::encode(&[
            b"EVALSHA",
            b"0123",
            b"3",
            b"s2b:f:{198.51.100.7}:sshd@192.0.2.4",
            b"s2b:c:{198.51.100.7}:sshd@192.0.2.4",
            b"s2b:o:{198.51.100.7}:sshd",
            b"1000",
            b"600000",
            b"5",
            b"1",
            b"a:17:4",
            b"600000",
            b"a:17:4",
        ]);
        assert_eq!(bytes, sender);
        assert_eq!(id_millis("1733280000000-3"), 1_733_280_000_000);
        assert_eq!(id_millis("garbage"), 0);
    }
}
