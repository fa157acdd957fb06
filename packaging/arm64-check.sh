#!/bin/sh
# make arm64-check: the arm64 package in an arm64 Debian bookworm root under qemu-user (binfmt_misc):
# install it, `gateway config check` the shipped config, `gateway wire coder` (the coder library, compiled
# with the cross compiler, loads and round-trips on arm64), and a demo whose summary says "lost": 0.
# usage: arm64-check.sh DISTDIR     (root needed: debootstrap, chroot, mounts)
set -eu
dist=$1
here=$(cd "$(dirname "$0")/.." && pwd)
BASE=${ARM64_BASE:-/var/cache/rostock-gateway/bookworm-arm64}
ROOT=${ARM64_ROOT:-/var/tmp/rostock-gateway-arm64}
DURATION=${DURATION:-60}
. "$here/packaging/chroot.sh"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/pyproject.toml" | head -n1)
deb=$dist/rostock-gateway_${version}_arm64.deb
# always from the current tree (ARM64_REUSE_DEB=1 keeps an existing one)
[ "${ARM64_REUSE_DEB:-0}" = 1 ] && [ -f "$deb" ] || "$here/packaging/build-deb.sh" arm64 "$dist"

"$here/packaging/bootstrap-root.sh" arm64 "$BASE" python3,python3-venv,ca-certificates,mosquitto,systemd
# a fresh copy of the cached root each time: the package is installed for the first time there
rm -rf "$ROOT"
cp -a "$BASE" "$ROOT"
mount_root
trust_host_cas
echo "== arm64 root: $(in_root uname -m), $(in_root python3 --version)"
cp "$deb" "$ROOT/tmp/"
in_root apt-get update -qq
in_root apt-get install -y -qq "/tmp/$(basename "$deb")" >"$dist/arm64-install.log" 2>&1 || {
    tail -n 30 "$dist/arm64-install.log"; exit 1; }
grep -A3 "register this public key" "$dist/arm64-install.log" || true
echo "== gateway config check"
in_root gateway config check /etc/gateway/gateway.toml
echo "== gateway wire coder (the arm64 coder library, through ctypes)"
in_root gateway wire coder
file -L "$ROOT"/opt/rostock-gateway/venv/lib/python3*/site-packages/gateway/wire/_ctxmix.so | sed "s|^$ROOT|  |"
echo "== the test harness from the package's wheelhouse (the demo lives there, not in the agent)"
in_root env PIP_CONFIG_FILE=/dev/null /opt/rostock-gateway/venv/bin/python -m pip install --isolated --quiet \
    --no-index --find-links /opt/rostock-gateway/wheels --disable-pip-version-check rostock-gateway-hil
echo "== gateway demo --duration $DURATION (under emulation)"
in_root gateway demo --duration "$DURATION" --workdir /tmp/arm64-demo >"$dist/arm64-demo.json" 2>"$dist/arm64-demo.log" || {
    tail -n 20 "$dist/arm64-demo.log"; cat "$dist/arm64-demo.json"; exit 1; }
summary=$(tail -n 1 "$dist/arm64-demo.json")
echo "$summary"
case "$summary" in
    *'"lost": 0'*) echo "arm64-check: ok ($(dpkg-deb -f "$deb" Package)_$(dpkg-deb -f "$deb" Version)_arm64)" ;;
    *) echo "arm64-check: FAILED"; exit 1 ;;
esac
