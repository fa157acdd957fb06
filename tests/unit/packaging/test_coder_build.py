"""hatch_build.py, the one place that compiles the coder library: the flags, `$CC`, a missing compiler."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gateway.wire import ctxmix

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
import hatch_build  # noqa: E402

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")


@needs_cc
def test_the_compiled_library_loads_and_names_the_hosts_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CC", raising=False)
    built = hatch_build.compile_library(tmp_path / "_ctxmix.so")
    assert ctxmix.self_check(built).startswith(f"{built} loaded, ABI {ctxmix.ABI}")
    assert hatch_build.target_machine(hatch_build.compiler()) == platform.machine()


@needs_cc
def test_a_warning_in_the_source_fails_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # -Wall -Wextra -Werror: the coder branch's C cannot drift into warnings
    monkeypatch.delenv("CC", raising=False)
    source = tmp_path / hatch_build.SOURCE
    source.parent.mkdir(parents=True)
    source.write_text(
        (ROOT / hatch_build.SOURCE).read_text() + "\nstatic int unused_by_anyone(int x) { return x; }\n"
    )
    with pytest.raises(subprocess.CalledProcessError):
        hatch_build.compile_library(tmp_path / "_ctxmix.so", tmp_path)


def test_a_missing_compiler_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "no-such-cc-for-this-test --sysroot=/x")
    with pytest.raises(hatch_build.CompilerMissing, match="apt-get install gcc") as caught:
        hatch_build.compiler()
    assert "no-such-cc-for-this-test" in str(caught.value)


@needs_cc
def test_a_library_that_writes_other_bytes_than_the_spec_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A coder built from other source (here one initial mixer weight changed) still round-trips, but a
    receiver elsewhere would decode its columns into other values: the loader refuses it."""
    monkeypatch.delenv("CC", raising=False)
    source = tmp_path / hatch_build.SOURCE
    source.parent.mkdir(parents=True)
    original = (ROOT / hatch_build.SOURCE).read_text()
    assert "#define WEIGHT_INIT 4000" in original
    source.write_text(original.replace("#define WEIGHT_INIT 4000", "#define WEIGHT_INIT 4001"))
    built = hatch_build.compile_library(tmp_path / "_ctxmix.so", tmp_path)
    other, params = ctxmix.load(built), (24, 1, 0)
    back = other.decode(other.encode(ctxmix._PROBE, params), ctxmix._PROBE.size, params)
    assert np.array_equal(back, ctxmix._PROBE)  # it round-trips: only the bytes tell it apart
    with pytest.raises(ctxmix.CoderUnavailable, match="writes other bytes than the format's coder"):
        ctxmix.self_check(built)
    monkeypatch.setattr(ctxmix, "LIBRARY", built)
    ctxmix.library.cache_clear()
    with pytest.raises(ctxmix.CoderUnavailable, match="other bytes"):
        ctxmix.library()
    monkeypatch.undo()
    ctxmix.library.cache_clear()
