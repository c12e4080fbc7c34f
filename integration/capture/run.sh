#!/usr/bin/env bash
# Capture lab: real daemons under real attacks, captured through a real rsyslogd, labelled per
# attempt. Writes tests/fixtures/real/<scenario>/. See README.md in this directory.
#
# usage (as root, Debian 12): integration/capture/run.sh [SERVICE...]
#   SERVICE: sshd mail nginx vsftpd postgresql mariadb (default: all)
#   env: CAPTURE_OUT=DIR      fixtures root (default: tests/fixtures/real of this checkout)
#        CAPTURE_NO_INSTALL=1 skip apt-get (the packages must be there)
#        CAPTURE_KEEP=1       keep the work directory (daemon configs, raw capture) after exit
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
P=s2bcap
OUT=${CAPTURE_OUT:-$REPO/tests/fixtures/real}
ALL_SERVICES=(sshd mail nginx vsftpd postgresql mariadb)
if [ $# -gt 0 ]; then SERVICES=("$@"); else SERVICES=("${ALL_SERVICES[@]}"); fi

log() { printf '[capture] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (network and mount namespaces, daemons)"
for s in "${SERVICES[@]}"; do
  case " ${ALL_SERVICES[*]} " in *" $s "*) ;; *) die "unknown service '$s' (known: ${ALL_SERVICES[*]})" ;; esac
done

# ---------------------------------------------------------------- packages
# Debian packages: the lab's plumbing, then each service's daemon and its attack clients.
base_pkgs=(iproute2 util-linux rsyslog python3 openssl netcat-openbsd procps)
declare -A svc_pkgs=(
  [sshd]="openssh-server openssh-client sshpass"
  [mail]="postfix dovecot-core dovecot-imapd dovecot-pop3d swaks libio-socket-inet6-perl curl"
  [nginx]="nginx curl"
  [vsftpd]="vsftpd lftp curl"
  [postgresql]="postgresql postgresql-client"
  [mariadb]="mariadb-server mariadb-client"
)
install_packages() {
  local want=("${base_pkgs[@]}") s p missing=()
  for s in "${SERVICES[@]}"; do read -r -a p <<<"${svc_pkgs[$s]}"; want+=("${p[@]}"); done
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} = 0 ]; then log "packages: all present (${want[*]})"; return; fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # postfix asks for a mailer type; "No configuration" leaves /etc/postfix without main.cf.
  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
  apt-get update -qq
  # Keep package scripts from starting services on the host (same guard as install-deps.sh).
  local policy=/usr/sbin/policy-rc.d made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
  fi
  local rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [ -n "$made_policy" ] && rm -f "$policy"
  [ $rc = 0 ] || die "apt-get install failed (rc=$rc)"
  log "installed: ${missing[*]}"
}
[ "${CAPTURE_NO_INSTALL:-0}" = 1 ] || install_packages

# ---------------------------------------------------------------- topology
# collector 198.51.100.1 (bridge br0, capture listener), server .10 (daemons + rsyslogd),
# benign user .20, attackers .66-.70; IPv6 2001:db8:5100::<same last octet>. Nothing in the
# root namespace.
NET4=198.51.100 NET6=2001:db8:5100
NSC=$P-col NSS=$P-srv
HOST_NS=(u20 a66 a67 a68 a69 a70)
ALL_NS=("$NSC" "$NSS")
for h in "${HOST_NS[@]}"; do ALL_NS+=("$P-$h"); done

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }
for ns in "${ALL_NS[@]}"; do ns_exists "$ns" && die "namespace $ns exists (another lab running, or a crash: ip netns del $ns)"; done

# A fixed work directory: paths under it show up in some daemons' lines (nginx's file names,
# postgres's socket), and a fixed name keeps regenerated fixtures comparable.
D=/tmp/s2bcap-lab
if [ -e "$D" ]; then
  log "removing stale work directory $D (no lab namespaces exist)"
  rm -rf "$D"
fi
mkdir -m 755 "$D"   # daemons drop privileges and must reach their files under it

cleanup() {
  local rc=$? ns pids i
  set +e
  # Every process in our namespaces was started by this script: end them by PID.
  for ns in "${ALL_NS[@]}"; do
    ns_exists "$ns" || continue
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -n "$pids" ] && kill $pids 2>/dev/null
  done
  for ((i = 0; i < 40; i++)); do
    pids=""
    for ns in "${ALL_NS[@]}"; do ns_exists "$ns" && pids+=$(ip netns pids "$ns" 2>/dev/null); done
    [ -z "$pids" ] && break
    sleep 0.1
  done
  for ns in "${ALL_NS[@]}"; do
    ns_exists "$ns" || continue
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    ip netns del "$ns"
  done
  if [ "${CAPTURE_KEEP:-0}" = 1 ]; then log "work directory kept: $D"; else rm -rf "$D"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NSC"; ip -n "$NSC" link set lo up
ip -n "$NSC" link add br0 type bridge
ip -n "$NSC" link set br0 up
ip -n "$NSC" addr add $NET4.1/24 dev br0
ip -n "$NSC" addr add $NET6::1/64 dev br0 nodad
add_host() { # add_host NS SHORT OCTET
  ip netns add "$1"; ip -n "$1" link set lo up
  ip -n "$NSC" link add "v-$2" type veth peer name eth0 netns "$1"
  ip -n "$NSC" link set "v-$2" master br0 up
  ip -n "$1" link set eth0 up
  ip -n "$1" addr add "$NET4.$3/24" dev eth0
  ip -n "$1" addr add "$NET6::$3/64" dev eth0 nodad
}
add_host "$NSS" srv 10
for h in "${HOST_NS[@]}"; do add_host "$P-$h" "$h" "${h#?}"; done
log "namespaces up: ${ALL_NS[*]}"

# ---------------------------------------------------------------- syslog path
mkdir -p "$D/etc" "$D/rsyslog-work"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n%s.10\tlab-server mail.example.org\n%s::10\tlab-server mail.example.org\n' $NET4 $NET6 > "$D/etc/hosts"
# An unreachable resolver in the server namespace: reverse lookups fail at once ("unknown").
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "$D/etc/resolv.conf"
chmod 644 "$D/etc/hosts" "$D/etc/resolv.conf"

# Two listeners: 5514 gets RFC5424 (the fixtures' lines.log), 5516 the same messages in the
# traditional RFC3164 forward format (lines-rfc3164.log), which keeps the full syslog tag.
for port in 5514 5516; do
  ip netns exec "$NSC" python3 "$HERE/listener.py" --bind $NET4.1 --port $port --out "$D/capture-$port.log" \
    --ready "$D/listener-$port.ready" </dev/null >"$D/listener-$port.out" 2>&1 &
  for ((i = 0; i < 100; i++)); do [ -e "$D/listener-$port.ready" ] && break; sleep 0.05; done
  [ -e "$D/listener-$port.ready" ] || die "capture listener did not start: $(cat "$D/listener-$port.out")"
done
ln -s capture-5514.log "$D/capture.log"
ln -s capture-5516.log "$D/capture-rfc3164.log"

cat > "$D/rsyslog.conf" <<CONF
# The lab's private rsyslogd: reads only DIR/devlog (the daemons' /dev/log), forwards
# everything to the capture listener as RFC5424 over TCP with octet-counted framing.
global(workDirectory="$D/rsyslog-work" localHostName="lab-server" maxMessageSize="64k")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="$D/devlog" CreatePath="on" RateLimit.Interval="0")
action(type="omfile" file="$D/all.log")
action(type="omfwd" target="$NET4.1" port="5514" protocol="tcp" TCP_Framing="octet-counted"
       template="RSYSLOG_SyslogProtocol23Format"
       queue.type="LinkedList" queue.timeoutShutdown="10" queue.timeoutActionCompletion="10"
       action.resumeRetryCount="-1" action.resumeInterval="1" action.resumeIntervalMax="2")
action(type="omfwd" target="$NET4.1" port="5516" protocol="tcp" TCP_Framing="octet-counted"
       template="RSYSLOG_TraditionalForwardFormat"
       queue.type="LinkedList" queue.timeoutShutdown="10" queue.timeoutActionCompletion="10"
       action.resumeRetryCount="-1" action.resumeInterval="1" action.resumeIntervalMax="2")
CONF
ip netns exec "$NSS" unshare -m -u "$HERE/nsexec.sh" "$D" -- \
  rsyslogd -n -f "$D/rsyslog.conf" -i "$D/rsyslogd.pid" </dev/null >"$D/rsyslogd.out" 2>&1 &
for ((i = 0; i < 100; i++)); do [ -S "$D/devlog" ] && break; sleep 0.05; done
[ -S "$D/devlog" ] || die "rsyslogd did not create $D/devlog: $(cat "$D/rsyslogd.out")"
log "rsyslogd and capture listener up (work directory $D)"

# ---------------------------------------------------------------- scenarios
python3 "$HERE/driver.py" --dir "$D" --out "$OUT" --nsexec "$HERE/nsexec.sh" "${SERVICES[@]}"
log "done: fixtures in $OUT"
