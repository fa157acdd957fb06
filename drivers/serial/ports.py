"""Stable port names: `/dev/serial/by-id/...` survives replugs and reboots, `/dev/ttyUSB0` does not.

The kernel numbers USB serial adapters in the order it finds them, so after a replug or a reboot
`/dev/ttyUSB0` may be another sensor. udev names each adapter by its vendor, model and serial number
under `/dev/serial/by-id/`; the driver opens the configured path on every reopen, so a by-id link
follows its adapter to whatever number it gets.
"""

from __future__ import annotations

import re
from pathlib import Path

BY_ID = Path("/dev/serial/by-id")
#: device names the kernel hands out in discovery order (USB-serial adapters, CDC-ACM devices)
_NUMBERED = re.compile(r"^tty(USB|ACM)\d+$")


def by_id_names(port: str, by_id: Path = BY_ID) -> list[str]:
    """The by-id links that point at the same device as `port` right now (none if unplugged)."""
    try:
        device = Path(port).resolve(strict=True)
        links = sorted(by_id.iterdir())
    except OSError:
        return []
    return [str(link) for link in links if link.resolve() == device]


def unstable_name_advice(port: str, by_id: Path = BY_ID) -> str | None:
    """Why and how to rename a port the kernel may renumber; None for a stable name."""
    if not _NUMBERED.match(Path(port).name):
        return None
    names = by_id_names(port, by_id)
    where = f"use {names[0]}" if names else f"use its link in {by_id}/ (ls -l {by_id})"
    return f"{port} may name another device after a replug or reboot: {where}"
