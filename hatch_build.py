"""The one place that compiles the coder library gateway/wire/_ctxmix.so from gateway/wire/ctxmix.c.

Used three ways (docs/decisions.md, "A compiled coder as a plain shared library"):
- by hatchling as the custom build hook of `pip wheel` / `pip install .`: the library is compiled for the
  compiler's target machine and the wheel is tagged `py3-none-linux_<machine>` (no CPython ABI: the library
  is loaded through ctypes, so one wheel serves every Python 3 of that machine);
- by hatchling for the editable install of `make setup`: compiled in place beside its source (gitignored);
- by `make` as a script (`python3 hatch_build.py`) when ctxmix.c changed after the install.

The compiler is `$CC`, else `cc`; `CC=aarch64-linux-gnu-gcc` makes an arm64 wheel (packaging/build-deb.sh).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
SOURCE = Path("gateway/wire/ctxmix.c")
LIBRARY = Path("gateway/wire/_ctxmix.so")
FLAGS = ("-O2", "-fPIC", "-shared", "-std=c11", "-Wall", "-Wextra", "-Werror")
#: GNU target triplets' first field -> the wheel platform tag's machine (PEP 425 `linux_<machine>`)
MACHINES = {"x86_64": "x86_64", "aarch64": "aarch64", "arm": "armv7l", "armv7l": "armv7l", "i686": "i686"}


class CompilerMissing(RuntimeError):
    """No C compiler: the coder library cannot be built."""


def compiler() -> list[str]:
    """The compiler command: `$CC` (may carry flags) or `cc`."""
    command = shlex.split(os.environ.get("CC", "") or "cc")
    if shutil.which(command[0]) is None:
        raise CompilerMissing(
            f"no C compiler {command[0]!r}: rostock-gateway compiles gateway/wire/ctxmix.c when installed "
            "from source; install one (Debian: apt-get install gcc) or set CC"
        )
    return command


def target_machine(command: list[str]) -> str:
    """The machine the compiler builds for, as a wheel tag spells it (`cc -dumpmachine`)."""
    triplet = subprocess.run([*command, "-dumpmachine"], check=True, capture_output=True, text=True).stdout
    first = triplet.strip().split("-")[0]
    return MACHINES.get(first, first)


def compile_library(output: Path, root: Path = ROOT) -> Path:
    """Compile ctxmix.c to `output` with the house flags; the compiler's errors go to stderr."""
    command = compiler()
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*command, *FLAGS, "-o", str(output), str(root / SOURCE)], check=True)
    return output


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ModuleNotFoundError:  # run as a script by `make`: only the compiler is needed
    BuildHookInterface = object  # type: ignore[assignment,misc]


class CtxmixBuildHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Compiles the coder library into the wheel (or in place for an editable install)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        if version == "editable":  # the editable install imports gateway/ from the tree itself
            compile_library(root / LIBRARY, root)
            return
        self._scratch = tempfile.mkdtemp(prefix="ctxmix-")
        built = compile_library(Path(self._scratch) / LIBRARY.name, root)
        build_data["force_include"][str(built)] = LIBRARY.as_posix()
        build_data["pure_python"] = False
        build_data["tag"] = f"py3-none-linux_{target_machine(compiler())}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        scratch = getattr(self, "_scratch", None)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    try:
        print(f"built {compile_library(ROOT / LIBRARY)}")
    except CompilerMissing as exc:
        sys.exit(f"error: {exc}")
    except subprocess.CalledProcessError as exc:
        sys.exit(f"error: compiling {SOURCE} failed ({exc.returncode})")
