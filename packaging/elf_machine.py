"""Check that a shared library inside a wheel is built for the target machine (packaging/build-deb.sh).

usage: elf_machine.py WHEEL MEMBER MACHINE     (MACHINE: x86_64 or aarch64; exit 1 on a mismatch)

Reads the ELF header's e_machine field (offset 18, little-endian on both targets) from the zip member,
so the check needs neither `file` nor the target's tools.
"""

from __future__ import annotations

import struct
import sys
import zipfile

#: ELF e_machine values (the System V gABI registry): EM_X86_64 and EM_AARCH64
E_MACHINE = {62: "x86_64", 183: "aarch64"}


def machine_of(header: bytes) -> str:
    """The machine an ELF header names, or a description of what the bytes are instead."""
    if header[:4] != b"\x7fELF" or len(header) < 20:
        return "not an ELF file"
    (code,) = struct.unpack_from("<H", header, 18)
    return E_MACHINE.get(code, f"ELF machine {code}")


def main(wheel: str, member: str, machine: str) -> int:
    with zipfile.ZipFile(wheel) as archive:
        try:
            header = archive.read(member)[:64]
        except KeyError:
            print(f"{wheel} has no {member}", file=sys.stderr)
            return 1
    found = machine_of(header)
    if found != machine:
        print(f"{wheel}: {member} is {found}, not {machine}", file=sys.stderr)
        return 1
    print(f"{member} in {wheel.rsplit('/', 1)[-1]}: {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
