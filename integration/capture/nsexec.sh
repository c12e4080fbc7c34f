#!/bin/sh
# nsexec.sh DIR [--bind SRC DST]... -- CMD ARGS...
# Meant to run as `ip netns exec s2bcap-srv unshare -m -u nsexec.sh ...`: inside the fresh
# private mount and UTS namespaces it sets the host name to lab-server, mounts a tmpfs /run
# and a tmpfs /dev (a few device nodes bind-mounted from the host, /dev/log a symlink to the
# lab's rsyslogd socket DIR/devlog), bind-mounts the lab's own /etc/passwd, shadow, group,
# hosts, resolv.conf (from DIR/etc) and any --bind pairs, then execs CMD. Nothing of this is
# visible outside the namespace; the host's /etc, /dev and /run are not modified.
set -eu
D=$1; shift
hostname lab-server
mount --make-rprivate /
mount -t tmpfs -o mode=755 s2bcap-run /run
mkdir -m 755 /run/hostdev /run/sshd
mount --rbind /dev /run/hostdev
mount -t tmpfs -o mode=755 s2bcap-dev /dev
for d in null zero full random urandom tty ptmx; do
  touch /dev/$d; mount --bind /run/hostdev/$d /dev/$d
done
mkdir /dev/pts /dev/shm
mount --bind /run/hostdev/pts /dev/pts
mount -t tmpfs -o mode=1777 s2bcap-shm /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
umount -l /run/hostdev
rmdir /run/hostdev
ln -s "$D/devlog" /dev/log
for f in passwd shadow group hosts resolv.conf; do
  [ -f "$D/etc/$f" ] && mount --bind "$D/etc/$f" "/etc/$f"
done
while [ $# -gt 0 ]; do
  case $1 in
    --bind) mkdir -p "$3" 2>/dev/null || true; mount --bind "$2" "$3"; shift 3 ;;
    --) shift; break ;;
    *) echo "nsexec.sh: bad argument $1" >&2; exit 2 ;;
  esac
done
exec "$@"
