"""The agent's wheel without the test harness, the harness as its own wheel, and `gateway demo` in both installs.

Both wheels are built for real (pip wheel, as packaging/build-deb.sh does) and installed into folders of
their own; the command runs from there with the checkout taken off sys.path, as on a gateway where only
the Debian package's venv exists.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gateway.cli.demo import HARNESS_DISTRIBUTION, MISSING_HARNESS

ROOT = Path(__file__).resolve().parents[3]
#: every test here builds and installs both wheels first (about 5 s): out of `make test-fast`
pytestmark = pytest.mark.slow

#: runs `gateway demo ARGS` with only the installed folders (argv[1], colon-separated) ahead of the
#: interpreter's own site-packages: the checkout (put on sys.path by the editable install) is taken off
RUN_INSTALLED = """
import sys
root, installed, *args = sys.argv[1:]
sys.path[:] = [*installed.split(":"), *(p for p in sys.path if p not in (root, ""))]
from gateway.cli import main
main(["demo", *args])
"""


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    for project in (ROOT, ROOT / "packaging" / "hil"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--wheel-dir",
                str(out),
                str(project),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    [agent] = out.glob("rostock_gateway-*.whl")
    [harness] = out.glob("rostock_gateway_hil-*.whl")
    return {"agent": agent, "harness": harness}


def install(wheel: Path, target: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target


def demo(installed: list[Path], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    folders = ":".join(str(p) for p in installed)
    return subprocess.run(
        [sys.executable, "-I", "-c", RUN_INSTALLED, str(ROOT), folders, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def test_the_agent_wheel_carries_no_harness_and_the_harness_wheel_carries_the_demo(
    wheels: dict[str, Path],
) -> None:
    agent = zipfile.ZipFile(wheels["agent"]).namelist()
    harness = zipfile.ZipFile(wheels["harness"]).namelist()
    assert "gateway/cli/demo.py" in agent
    assert not any(name.startswith("hil/") for name in agent)
    assert {"hil/demo.py", "hil/demo_cli.py", "hil/children.py", "hil/sims/nmea_station.py"} <= set(harness)
    metadata = zipfile.ZipFile(wheels["harness"]).read(
        next(n for n in harness if n.endswith(".dist-info/METADATA"))
    )
    assert b"Requires-Dist: rostock-gateway==" in metadata


def test_demo_without_the_harness_says_in_one_line_what_to_install(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    agent = install(wheels["agent"], tmp_path / "agent")
    result = demo([agent], "--duration", "15", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == MISSING_HARNESS
    assert f"pip install {HARNESS_DISTRIBUTION}" in result.stderr
    assert result.stdout == ""


def test_demo_with_the_harness_installed_runs_the_harness_demo(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    agent = install(wheels["agent"], tmp_path / "agent")
    harness = install(wheels["harness"], tmp_path / "harness")
    # a config the demo refuses before it starts any child: proves the command reached the harness's demo
    # (which names its folder and then the config error) without the minute a whole run takes
    config = tmp_path / "bad.toml"
    config.write_text('gateway_id = "gw-demo"\n[[sensors]]\nid = "x"\ndriver = "no-such-bus"\n')
    workdir = tmp_path / "run"
    result = demo(
        [agent, harness], "--duration", "15", "--config", str(config), "--workdir", str(workdir), cwd=tmp_path
    )
    assert MISSING_HARNESS not in result.stderr
    assert f"demo files in {workdir}" in result.stderr
    assert "demo failed:" in result.stderr and "no-such-bus" in result.stderr
    assert result.returncode == 1
