"""The one child-process harness of the demo and the integration tests.

Every child is `python -m <module> ...` with the same interpreter, its stderr (and stdout unless piped) in
`<workdir>/<name>.log`, so a failing run leaves one log per child to read. Simulators print one JSON
"ready" line on stdout before they serve; `ready()` reads it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from kernel.errors import GatewayError

#: how long a child may take to leave after SIGTERM before it is killed: the agent's ordered shutdown
#: (drain, seal, close the store) takes well under a second here, a child under qemu-user a few seconds
TERMINATE_TIMEOUT_S = 10.0


class ChildProcesses:
    """The children of one demo run or one test; `stop_all()` leaves none behind, whatever happened."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        #: every child started, in order; a name started again (an agent restarted) is looked up as its latest
        self.started: list[tuple[str, subprocess.Popen[str]]] = []
        self.children: dict[str, subprocess.Popen[str]] = {}
        self._logs: list[IO[str]] = []

    def start(
        self, name: str, *args: str, pipe: bool = False, cwd: Path | None = None
    ) -> subprocess.Popen[str]:
        """`python <args>` as the child `name`; stdout piped to the caller when `pipe`, else into the log."""
        log = (self.workdir / f"{name}.log").open("w")
        self._logs.append(log)
        process = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE if pipe else log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=cwd,
        )
        self.children[name] = process
        self.started.append((name, process))
        return process

    def __getitem__(self, name: str) -> subprocess.Popen[str]:
        return self.children[name]

    def running(self, name: str) -> bool:
        """Whether the child `name` is still alive."""
        return self.children[name].poll() is None

    def log(self, name: str) -> str:
        """What the child `name` wrote to its log so far."""
        return (self.workdir / f"{name}.log").read_text()

    def ready(self, name: str) -> dict[str, Any]:
        """The JSON line a simulator prints once it serves (a GatewayError naming its log if it died first)."""
        stdout = self.children[name].stdout
        assert stdout is not None, f"{name} was started without pipe=True"
        line = stdout.readline()
        if not line:
            raise GatewayError(f"{name} did not start; see {self.workdir / name}.log")
        ready: dict[str, Any] = json.loads(line)
        return ready

    def start_ready(self, name: str, *args: str) -> dict[str, Any]:
        """Start a simulator and wait for its ready line (which says where it serves)."""
        self.start(name, *args, pipe=True)
        return self.ready(name)

    def terminate(self, name: str, timeout_s: float = TERMINATE_TIMEOUT_S) -> str:
        """SIGTERM, wait, SIGKILL if it hangs; returns what it printed on a piped stdout."""
        return _terminate(self.children[name], timeout_s)

    def stop_all(self, *, graceful: bool = False) -> None:
        """Every child still running is stopped, the last started first (SIGTERM when `graceful`, else
        SIGKILL), and every log closed."""
        for _name, process in reversed(self.started):
            if graceful:
                _terminate(process, TERMINATE_TIMEOUT_S)
            elif process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        for log in self._logs:
            log.close()


def _terminate(process: subprocess.Popen[str], timeout_s: float) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return out or ""
