# Shared by arm64-check.sh and systemtest.sh (sourced): a bookworm root with /proc, /dev and /dev/pts
# mounted, the host's extra CA certificates, and commands run with a clean environment.

# the host's environment (PIP_*, proxies' CA paths) and pip configuration must not leak into the root
in_root() {
    chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"
}

mount_root() {
    mount -t proc proc "$ROOT/proc"
    mount --bind /dev "$ROOT/dev"
    mount --bind /dev/pts "$ROOT/dev/pts"
    trap unmount_root EXIT INT TERM
}

unmount_root() {
    for point in dev/pts dev proc; do
        umount -l "$ROOT/$point" 2>/dev/null || true
    done
}

# on build machines behind a TLS-intercepting proxy, apt and pip in the root must trust its CA
trust_host_cas() {
    if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
        mkdir -p "$ROOT/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
        in_root update-ca-certificates >/dev/null
    fi
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
}
