#!/usr/bin/env bash
# Installs the real peers the end-to-end tests talk to (Debian/Ubuntu, as root).
# Safe to re-run: apt-get skips what is already installed.
set -euo pipefail
# fail2ban: its /etc/fail2ban (jail.conf, paths, jail.d) is the input of the import-fail2ban
# test; its server is never started. python3-aiosmtpd: the SMTP server the mail notifier test sends to.
# redis-server: the engine the cluster tests share (each test starts its own on loopback).
# libfaketime: a collector whose clock runs ahead (LD_PRELOAD into that one process only).
packages=(openssl python3-aiosmtpd redis-server libfaketime nftables ipset iptables conntrack openssh-server openssh-client sshpass rsyslog rsyslog-gnutls netcat-openbsd iproute2 procps python3 util-linux systemd-journal-remote fail2ban sudo man-db adduser)
if [ "$(id -u)" != 0 ]; then
  echo "install-deps.sh: run as root (sudo $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
services=(ssh rsyslog fail2ban redis-server)
running() { command -v service >/dev/null 2>&1 && service "$1" status >/dev/null 2>&1; }
declare -A was_running=()
for svc in "${services[@]}"; do
  if running "$svc"; then was_running[$svc]=1; fi
done
apt-get update -qq
# Keep package scripts from starting services (fail2ban would start banning on the host).
# An existing policy-rc.d is the host's and is kept; what it lets start is stopped below.
# S2B_POLICY_RC_D: another path, for tests/install_deps.rs (which runs this script with shims).
policy=${S2B_POLICY_RC_D:-/usr/sbin/policy-rc.d}
made_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
fi
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
if [ -n "$made_policy" ]; then rm -f "$policy"; fi
# The packages' own services are not needed: the tests start private sshd/rsyslogd instances
# inside network namespaces. A service the install started (despite policy-rc.d) is stopped
# again, and said so; one that was running before is the host's and is left alone.
for svc in "${services[@]}"; do
  if running "$svc" && [ -z "${was_running[$svc]:-}" ]; then
    echo "install-deps.sh: stopping $svc, which the install started (the tests use private instances)"
    service "$svc" stop >/dev/null 2>&1 || true
  elif running "$svc"; then
    echo "install-deps.sh: $svc was already running on this host; left running"
  fi
done
echo "install-deps.sh: installed ${packages[*]}"
# cargo-deb builds the Debian package (`cargo deb`; integration/package.rs installs it).
if ! cargo deb --version >/dev/null 2>&1; then
  echo "install-deps.sh: cargo install cargo-deb"
  cargo install cargo-deb --locked --quiet
fi
