#!/bin/sh
# Build (once) a minimal Debian bookworm root for ARCH in DIR with the extra packages given.
# The mirror is the one this machine's apt already uses (sources.list.d), so the same proxy applies.
# usage: bootstrap-root.sh ARCH DIR PACKAGE[,PACKAGE...]
set -eu
arch=$1 dir=$2 include=$3
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}
if [ -x "$dir/usr/bin/python3" ] && [ -f "$dir/.bootstrapped" ]; then
    echo "reusing $dir"
    exit 0
fi
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
    command -v qemu-aarch64-static >/dev/null || apt-get install -y -qq qemu-user-static binfmt-support
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable "qemu-$(echo "$arch" | sed 's/arm64/aarch64/')" 2>/dev/null || true
fi
rm -rf "$dir"
mkdir -p "$dir"
debootstrap --arch="$arch" --variant=minbase --include="$include" bookworm "$dir" "$mirror"
touch "$dir/.bootstrapped"
