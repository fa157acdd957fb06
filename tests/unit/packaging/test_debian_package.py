"""The Debian package's layout, conffiles and maintainer scripts, and the wheel's data files.

The package is built for real (dpkg-deb) but without the dependency wheelhouse, which needs the
network; `make deb` builds the complete one. It is built for arm64 when Debian's cross compiler is there
(`make deb` installs it) or on an arm64 host, else for the host's amd64: the coder library in its wheel must be the target's.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = ["postinst", "prerm", "postrm"]
sys.path.insert(0, str(ROOT / "packaging"))
from elf_machine import machine_of  # noqa: E402

# arm64 where it needs no cross compiler (a Pi) or where Debian's is installed, else the amd64 host's own
ARCH = "arm64" if platform.machine() == "aarch64" or shutil.which("aarch64-linux-gnu-gcc") else "amd64"
MACHINE = {"arm64": "aarch64", "amd64": "x86_64"}[ARCH]

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    subprocess.run(
        [str(ROOT / "packaging" / "build-deb.sh"), ARCH, str(out), "9.8.7"],
        check=True,
        capture_output=True,
        env={**os.environ, "DEB_WITHOUT_DEPENDENCIES": "1"},
        timeout=300,
    )
    return out / f"rostock-gateway_9.8.7_{ARCH}.deb"


def deb_files(deb: Path) -> dict[str, str]:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
    files = {}
    for line in listing.splitlines():
        mode, _owner, *_rest = line.split()
        name = line.split(" ./", 1)[1].split(" -> ")[0]
        files["/" + name.rstrip("/")] = mode
    return files


@pytest.mark.slow  # builds the package (about 3.5 s): out of `make test-fast`
def test_units_snippets_command_and_config_are_in_their_debian_places(deb: Path) -> None:
    files = deb_files(deb)
    for unit in ["gateway.service", "gateway-receiver.service", "gateway-receiver@.service"]:
        assert f"/usr/lib/systemd/system/{unit}" in files
    assert "/usr/lib/systemd/system/gateway-metrics.timer" in files
    assert "/usr/lib/sysusers.d/rostock-gateway.conf" in files
    assert "/usr/lib/tmpfiles.d/rostock-gateway.conf" in files
    assert files["/usr/bin/gateway"].startswith("l")
    assert files["/etc/gateway/gateway.toml"] == "-rw-r-----"
    # the key pair is made by postinst on first install, never shipped (and so never overwritten)
    assert not any(name.endswith(".pem") for name in files)


@pytest.mark.slow
def test_control_names_the_architecture_and_the_config_is_a_conffile(deb: Path) -> None:
    def field(name: str) -> str:
        return subprocess.run(
            ["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True, text=True
        ).stdout.strip()

    assert field("Package") == "rostock-gateway"
    assert field("Version") == "9.8.7"
    assert field("Architecture") == ARCH
    assert "python3-venv" in field("Depends")
    conffiles = subprocess.run(
        ["dpkg-deb", "--ctrl-tarfile", str(deb)], check=True, capture_output=True
    ).stdout
    assert b"/etc/gateway/gateway.toml" in conffiles


@pytest.mark.slow
def test_the_wheel_carries_the_example_config_and_the_units(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    [wheel] = (tmp_path / "opt/rostock-gateway/wheels").glob("rostock_gateway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "gateway/data/example.toml" in names
    assert "gateway/data/systemd/gateway.service" in names
    assert "drivers/modbus/profiles/sdm630.toml" in names
    # the test harness is its own wheel in the same wheelhouse: `gateway demo` runs its simulators once
    # it is installed (docs/service.md), the agent's wheel carries none of it
    assert not any(name.startswith("hil/") for name in names)
    [harness] = (tmp_path / "opt/rostock-gateway/wheels").glob("rostock_gateway_hil-*.whl")
    assert "hil/sims/nmea_station.py" in set(zipfile.ZipFile(harness).namelist())


@pytest.mark.slow
def test_the_wheel_is_tagged_for_the_target_and_carries_its_coder_library(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    [wheel] = (tmp_path / "opt/rostock-gateway/wheels").glob("rostock_gateway-*.whl")
    assert wheel.name.endswith(f"-py3-none-linux_{MACHINE}.whl")
    library = zipfile.ZipFile(wheel).read("gateway/wire/_ctxmix.so")
    assert machine_of(library[:64]) == MACHINE


def test_the_machine_check_tells_the_two_targets_apart() -> None:
    # the ELF headers of the two targets differ only in e_machine (offset 18) for this check
    header = bytearray(b"\x7fELF\x02\x01\x01" + bytes(11) + b"\x00\x00" + bytes(44))
    header[18:20] = (183).to_bytes(2, "little")
    assert machine_of(bytes(header)) == "aarch64"
    header[18:20] = (62).to_bytes(2, "little")
    assert machine_of(bytes(header)) == "x86_64"
    assert machine_of(b"#!/bin/sh\n") == "not an ELF file"


@pytest.mark.parametrize("script", SCRIPTS)
def test_maintainer_scripts_are_valid_posix_sh(script: str) -> None:
    path = ROOT / "packaging" / "debian" / script
    assert os.access(path, os.X_OK)
    subprocess.run(["sh", "-n", str(path)], check=True)


def test_install_is_offline_and_ignores_the_hosts_pip_configuration() -> None:
    postinst = (ROOT / "packaging" / "debian" / "postinst").read_text()
    assert "--no-index" in postinst and "--isolated" in postinst
    assert "PIP_CONFIG_FILE=/dev/null" in postinst


def test_remove_keeps_state_and_keys_and_purge_removes_them() -> None:
    postrm = (ROOT / "packaging" / "debian" / "postrm").read_text()
    remove, purge = postrm.split("remove)", 1)[1].split("purge)", 1)
    assert "/var/lib/gateway" not in remove and "/etc/gateway" not in remove
    assert "/var/lib/gateway" in purge and "/etc/gateway" in purge
