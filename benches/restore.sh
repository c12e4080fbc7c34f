#!/usr/bin/env bash
# Restore benchmark: how long a start with N active bans in the store takes until all N are
# elements of the nft sets.
#
#   sudo benches/restore.sh [N]        (default N = 100000; S2B_BENCH_KEEP=1 keeps the temp dir)
#
# Builds the release binary, creates a private network namespace (nothing is added to the root
# namespace), writes N active bans (1 h left; 500 IPv4 from 203.0.113.0/24 and 198.51.100.0/24,
# the rest IPv6 from 2001:db8:1::/64), each one row that is its history too, into a fresh
# <state dir>/syslog2ban.sqlite3 with the schema of src/ban/store/schema.rs, starts the daemon in the
# namespace and polls `nft -j list set` until both sets hold N elements. Prints N and the
# seconds from process start until the set was seen complete, with the daemon's own log
# timestamps. Cleans up the daemon and anything else in the namespace by PID, then the
# namespace and the temporary directory.
set -euo pipefail

N=${1:-100000}
N4=500
if (( N < N4 )); then N4=$N; fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3)

die() { echo "restore.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (network namespace, nftables)"
for t in ip nft cargo "$PY"; do command -v "$t" >/dev/null || die "missing $t"; done

echo "building release binary ..." >&2
(cd "$REPO" && cargo build --release --quiet --bin syslog2ban)
BIN=$REPO/target/release/syslog2ban

NS=s2bbench-$$
DIR=$(mktemp -d /tmp/s2bbench.XXXXXX)
PID=

cleanup() {
    set +e
    if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID"
        for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$PID" 2>/dev/null && kill -KILL "$PID"
        wait "$PID" 2>/dev/null
    fi
    if ip netns list | grep -qw "$NS"; then
        for p in $(ip netns pids "$NS"); do kill -KILL "$p" 2>/dev/null; done
        ip netns del "$NS"
    fi
    if [[ ${S2B_BENCH_KEEP:-0} == 1 ]]; then
        echo "keeping $DIR (daemon log: $DIR/daemon.log)" >&2
    else
        rm -rf "$DIR"
    fi
}
trap cleanup EXIT

ip netns add "$NS"
ip -n "$NS" link set lo up

mkdir -p "$DIR/s2b/conf.d" "$DIR/state"
cp "$REPO/conf.d/sshd.toml" "$DIR/s2b/conf.d/"
cat > "$DIR/s2b/syslog2ban.toml" <<TOML
[[listen]]
type = "tcp"
address = "127.0.0.1:5514"

[ban]
backend = "nftables"
table = "syslog2ban"

[control]
socket = "$DIR/s2b.sock"

[state]
dir = "$DIR/state"
TOML

echo "writing $N active bans into $DIR/state/syslog2ban.sqlite3 ..." >&2
"$PY" - "$DIR/state/syslog2ban.sqlite3" "$N" "$N4" <<'PY'
import ipaddress, sqlite3, sys, time
path, n, n4 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = sqlite3.connect(path)
# The table of src/ban/store/schema.rs (Store::open: no key index on bans, see store/rows.rs;
# a ban's row is its history too).
c.executescript("""
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS bans (
    address  TEXT    NOT NULL,
    jail     TEXT    NOT NULL,
    origin   TEXT    NOT NULL,
    started  INTEGER NOT NULL,
    expires  INTEGER,
    failures INTEGER NOT NULL,
    sample   TEXT    NOT NULL,
    decided_by TEXT,
    more_origins TEXT,
    placement TEXT,
    ended    INTEGER
);
""")
v4 = ["203.0.113.%d" % i for i in range(1, 255)] + ["198.51.100.%d" % i for i in range(1, 255)]
addrs = v4[:n4] + ["2001:db8:1::%x:%x" % (i >> 16, i & 0xffff) for i in range(1, n - n4 + 1)]
assert len({ipaddress.ip_address(a) for a in addrs}) == n
now = int(time.time() * 1000)
started, expires = now - 60_000, now + 3_600_000
sample = "Failed password for root from %s port 4242 ssh2"
c.executemany("INSERT INTO bans (address, jail, origin, started, expires, failures, sample)"
              " VALUES (?, 'sshd', '198.51.100.10', ?, ?, 5, ?)",
              ((a, started, expires, sample % a) for a in addrs))
c.commit()
c.close()
PY

count() {
    local total=0 c
    for set in banned4 banned6; do
        c=$(ip netns exec "$NS" nft -j list set inet syslog2ban "$set" 2>/dev/null |
            "$PY" -c 'import json,sys
try:
    v = json.load(sys.stdin)
except ValueError:
    print(0); sys.exit()
print(sum(len(i["set"].get("elem", [])) for i in v["nftables"] if "set" in i))') || c=0
        total=$((total + ${c:-0}))
    done
    echo "$total"
}

now() { date +%s.%N; }

echo "starting the daemon in netns $NS ..." >&2
T0=$(now)
# `ip netns exec` may fork: let the shell inside the namespace report its own PID, then
# exec the daemon under it, so $PID is the daemon itself (for RSS and the clean stop).
RUST_LOG=info,syslog2ban=debug ip netns exec "$NS" sh -c 'echo $$ > "$1"; shift; exec "$@"' sh \
    "$DIR/daemon.pid" "$BIN" run --config "$DIR/s2b" >"$DIR/daemon.log" 2>&1 &
for _ in $(seq 100); do [[ -s $DIR/daemon.pid ]] && break; sleep 0.02; done
PID=$(cat "$DIR/daemon.pid")

seen=0 prev_start=$T0 polls=0
deadline=$(awk -v t="$T0" 'BEGIN { printf "%.3f", t + 300 }')
while :; do
    start=$(now)
    seen=$(count)
    end=$(now)
    polls=$((polls + 1))
    if (( seen >= N )); then break; fi
    kill -0 "$PID" 2>/dev/null || { cat "$DIR/daemon.log" >&2; die "daemon exited"; }
    restored=$(sed -n 's/.*Ban store read restored=\([0-9]*\).*/\1/p' "$DIR/daemon.log")
    if [[ -n $restored && $restored != "$N" ]]; then die "the daemon restored $restored of $N stored bans"; fi
    if awk -v a="$end" -v b="$deadline" 'BEGIN { exit !(a > b) }'; then
        tail -n 30 "$DIR/daemon.log" >&2
        die "only $seen of $N elements after 300 s"
    fi
    prev_start=$start
    sleep 0.05
done
rss=$(awk '/VmHWM/ {print $2, $3}' "/proc/$PID/status")

"$PY" - "$DIR/daemon.log" "$T0" "$prev_start" "$start" "$end" "$N" "$seen" "$polls" "$rss" <<'PY'
import sys, datetime
log, t0, prev, start, end, n, seen, polls, rss = sys.argv[1:]
t0, prev, start, end = map(float, (t0, prev, start, end))
def ts(line):
    try:
        return datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp() - t0
    except (ValueError, IndexError):
        return None
marks, batches, last_batch = {}, 0, None
for line in open(log, errors="replace"):
    for key in ("Ban store open", "Ban store read", "Restored bans sent", "Ready"):
        if key in line and key not in marks:
            marks[key] = (ts(line), line.strip())
    if "Firewall batch applied" in line:
        batches += 1
        last_batch = (ts(line), line.strip())
print(f"restore benchmark: {n} active bans in the store, {seen} elements in nft")
print(f"  all {n} elements seen in the nft sets {end - t0:.2f} s after process start")
print(f"  (the poll that saw them started at {start - t0:.2f} s; the previous poll, started at "
      f"{prev - t0:.2f} s, saw fewer; one listing took {end - start:.2f} s; {polls} polls)")
for key in ("Ban store read", "Restored bans sent", "Ready"):
    if key in marks and marks[key][0] is not None:
        print(f"  daemon log +{marks[key][0]:.2f} s: {marks[key][1]}")
if last_batch and last_batch[0] is not None:
    print(f"  daemon log +{last_batch[0]:.2f} s: last of {batches} firewall batches: {last_batch[1]}")
print(f"  daemon peak RSS: {rss}")
PY

t_stop=$(now)
kill -TERM "$PID"
wait "$PID" || true
awk -v a="$(now)" -v b="$t_stop" -v n="$N" 'BEGIN { printf "  clean stop (SIGTERM, table with %d elements deleted) took %.2f s\n", n, a - b }'
PID=
