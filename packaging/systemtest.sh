#!/bin/sh
# make systemtest: the amd64 package in a booted Debian bookworm (systemd as PID 1 under
# systemd-nspawn --boot, private network), with a pty NMEA simulator, Mosquitto and the receiver.
# Shows: READY with the hardening on; readings at the receiver; SIGSTOP of the agent caught by the
# watchdog, restart, nothing lost; an invalid config leaves the unit failed, not restarting; an
# upgrade to a rebuilt newer package keeps and delivers the buffer; downgrade, remove and purge.
# usage: systemtest.sh DISTDIR     (root needed: debootstrap, systemd-nspawn)
set -eu
dist=$(cd "$1" 2>/dev/null && pwd || { mkdir -p "$1" && cd "$1" && pwd; })
here=$(cd "$(dirname "$0")/.." && pwd)
BASE=${SYSTEMTEST_BASE:-/var/cache/rostock-gateway/bookworm-amd64}
ROOT=${SYSTEMTEST_ROOT:-/var/tmp/rostock-gateway-systemtest}
MACHINE=rostock-systemtest
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/pyproject.toml" | head -n1)
old=rostock-gateway_${version}_amd64.deb
new=rostock-gateway_${version}+systemtest1_amd64.deb

step() { echo "== $*"; }
fail() { echo "systemtest: FAILED: $*"; in_box journalctl --no-pager -n 60 -u gateway.service || true; exit 1; }

"$here/packaging/bootstrap-root.sh" amd64 "$BASE" systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates,mosquitto,procps
step "building the package from the current tree, and again as a newer version for the upgrade"
"$here/packaging/build-deb.sh" amd64 "$dist"
"$here/packaging/build-deb.sh" amd64 "$dist" "${version}+systemtest1"

rm -rf "$ROOT"
cp -a "$BASE" "$ROOT"
cp "$dist/$old" "$dist/$new" "$ROOT/root/"
cp "$here/packaging/systemtest/"* "$ROOT/root/"

step "booting $ROOT with systemd-nspawn --boot"
# --keep-unit and --register=no: no D-Bus/machined on the host side is needed
systemd-nspawn --quiet --boot --private-network --keep-unit --register=no -M "$MACHINE" -D "$ROOT" \
    >"$dist/systemtest-boot.log" 2>&1 &
nspawn=$!
leader=""
cleanup() {
    [ -z "$leader" ] || nsenter -t "$leader" -a systemctl poweroff >/dev/null 2>&1 || true
    sleep 2
    kill "$nspawn" 2>/dev/null || true
    wait "$nspawn" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
for _ in $(seq 100); do
    leader=$(pgrep -P "$nspawn" | head -n1 || true)
    [ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ] && break
    sleep 0.2
done
[ -n "$leader" ] || { cat "$dist/systemtest-boot.log"; echo "systemtest: FAILED: the container did not boot"; exit 1; }
in_box() { nsenter -t "$leader" -a /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
in_box systemctl is-system-running --wait >/dev/null || true
echo "PID 1 in the container: $(in_box ps -o comm= -p 1), $(in_box systemctl is-system-running || true)"

# the assertions run inside the container: one script, so each check is one process there
in_box sh /root/checks.sh "$old" "$new" || fail "see the lines above"
echo "systemtest: ok ($old -> $new, booted with systemd-nspawn)"
