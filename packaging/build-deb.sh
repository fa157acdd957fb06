#!/bin/sh
# Build rostock-gateway_<version>_<arch>.deb with dpkg-deb from the project's own files:
# the project wheel, a wheelhouse of its dependencies for ARCH (binary wheels for CPython 3.11,
# the Python of Debian bookworm / Raspberry Pi OS), the units, sysusers and tmpfiles snippets,
# /etc/gateway/gateway.toml (a conffile) and the maintainer scripts in packaging/debian/.
# usage: build-deb.sh ARCH OUTDIR [DEB_VERSION]     (ARCH: amd64 or arm64)
set -eu
arch=$1 out=$2
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/pyproject.toml" | head -n1)
deb_version=${3:-$version}
case "$arch" in
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) echo "unsupported architecture $arch (arm64 and amd64 are supported)" >&2; exit 2 ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$out" "$root/DEBIAN" "$root/opt/rostock-gateway/wheels" "$root/usr/bin" \
    "$root/usr/lib/systemd/system" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d" \
    "$root/etc/gateway" "$root/usr/share/doc/rostock-gateway"

# the project wheel, with config/example.toml and systemd/ as package data and the coder library
# gateway/wire/_ctxmix.so compiled for ARCH by hatch_build.py: the host's $CC (or cc) when ARCH is the
# host's, else Debian's cross compiler <machine>-linux-gnu-gcc (`make deb` installs gcc-aarch64-linux-gnu)
if [ "$(uname -m)" = "$machine" ]; then
    cc=${CC:-cc}
else
    cc=$machine-linux-gnu-gcc
fi
command -v "${cc%% *}" >/dev/null 2>&1 || {
    echo "no C compiler $cc for $arch: install Debian's gcc-$machine-linux-gnu (make deb does)" >&2; exit 2; }
CC=$cc "$python" -m pip wheel --quiet --no-deps --wheel-dir "$root/opt/rostock-gateway/wheels" "$here"
wheel=$(ls "$root"/opt/rostock-gateway/wheels/rostock_gateway-"$version"-py3-none-linux_"$machine".whl)
# the library in the wheel must be the target's: an ELF e_machine check, no `file` needed
"$python" "$here/packaging/elf_machine.py" "$wheel" gateway/wire/_ctxmix.so "$machine"
# the test harness (simulators, the demo) as its own wheel beside it: postinst installs only the agent;
# `gateway demo` and the system tests install this one from the same wheelhouse (docs/service.md)
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$root/opt/rostock-gateway/wheels" "$here/packaging/hil"

# its dependencies as binary wheels for the target: manylinux tags up to bookworm's glibc 2.36, and
# linux_<machine> for the project wheel itself (pip refuses to resolve a wheel its platforms exclude)
# (DEB_WITHOUT_DEPENDENCIES=1: the project wheel only, for the fast test of the package's layout)
platforms=""
for tag in linux manylinux2014 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux_2_35 manylinux_2_36; do
    platforms="$platforms --platform ${tag}_$machine"
done
# shellcheck disable=SC2086
[ "${DEB_WITHOUT_DEPENDENCIES:-0}" = 1 ] || "$python" -m pip download --quiet --only-binary=:all: $platforms --python-version 3.11 \
    --implementation cp --abi cp311 --dest "$root/opt/rostock-gateway/wheels" \
    "$wheel"

ln -s /opt/rostock-gateway/venv/bin/gateway "$root/usr/bin/gateway"
for unit in gateway.service gateway-metrics.service gateway-metrics.timer gateway-receiver.service gateway-receiver@.service; do
    install -m 0644 "$here/systemd/$unit" "$root/usr/lib/systemd/system/$unit"
done
install -m 0644 "$here/systemd/gateway.sysusers.conf" "$root/usr/lib/sysusers.d/rostock-gateway.conf"
install -m 0644 "$here/systemd/gateway.tmpfiles.conf" "$root/usr/lib/tmpfiles.d/rostock-gateway.conf"
install -m 0640 "$here/config/example.toml" "$root/etc/gateway/gateway.toml"
install -m 0644 "$here/README.md" "$root/usr/share/doc/rostock-gateway/README.md"
printf 'Rostock gateway agent\nLicense: Apache-2.0\n' > "$root/usr/share/doc/rostock-gateway/copyright"
for script in postinst prerm postrm; do
    install -m 0755 "$here/packaging/debian/$script" "$root/DEBIAN/$script"
done
install -m 0644 "$here/packaging/debian/conffiles" "$root/DEBIAN/conffiles"
size=$(du -sk "$root" | cut -f1)
sed -e "s/@VERSION@/$deb_version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    "$here/packaging/debian/control.in" > "$root/DEBIAN/control"
deb=$out/rostock-gateway_${deb_version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "built $deb ($(du -k "$deb" | cut -f1) KiB, $(ls "$root/opt/rostock-gateway/wheels" | wc -l) wheels)"
