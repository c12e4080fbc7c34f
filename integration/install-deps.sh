#!/usr/bin/env bash
# Installs the real peers the end-to-end tests talk to (Debian/Ubuntu, as root).
# Safe to re-run: apt-get skips what is already installed.
set -euo pipefail
packages=(openssl nftables openssh-server openssh-client sshpass rsyslog rsyslog-gnutls netcat-openbsd iproute2 procps python3 util-linux systemd-journal-remote)
if [ "$(id -u)" != 0 ]; then
  echo "install-deps.sh: run as root (sudo $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# The packages' own services are not needed: the tests start private sshd/rsyslogd instances
# inside network namespaces. Stop any the install started, so nothing listens on the host.
for svc in ssh rsyslog; do
  if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
echo "install-deps.sh: installed ${packages[*]}"
