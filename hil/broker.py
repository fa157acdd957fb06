"""A real Mosquitto broker on a free loopback port, for tests and the demo (never a system service)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from hil.tls import ServerCertificate
from kernel.errors import GatewayError

#: Debian installs the broker in sbin, off an ordinary user's PATH
CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str:
    """Path of the mosquitto binary, or GatewayError saying how to install it."""
    found = shutil.which("mosquitto") or next((c for c in CANDIDATES if os.access(c, os.X_OK)), None)
    if found is None:
        raise GatewayError("mosquitto not found: install Debian's 'mosquitto' package (make setup does)")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Mosquitto:
    """Start/stop/restart a broker on one fixed port with persistence, so queued QoS 1 messages survive a restart.

    With `tls`, a second listener on `tls_port` speaks MQTT over TLS with that server certificate; with
    `users` (name -> password) anonymous clients are refused on both listeners.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        max_inflight: int = 20,
        tls: ServerCertificate | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.tls_port = free_port() if tls is not None else None
        self.binary = find_mosquitto()
        self._process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "mosquitto.conf"
        access = "allow_anonymous true\n"
        if users is not None:
            access = f"allow_anonymous false\npassword_file {self._password_file(users)}\n"
        listener = f"listener {self.port} 127.0.0.1\n"
        self.config_path.write_text(
            # started as root, mosquitto would switch to user "mosquitto", who cannot write our workdir
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            f"{listener}{access}"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            f"max_inflight_messages {max_inflight}\n"
            "max_queued_messages 100000\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
        )
        if tls is not None:
            with self.config_path.open("a") as config:
                config.write(
                    f"listener {self.tls_port} 127.0.0.1\n"
                    f"certfile {tls.cert_file}\nkeyfile {tls.key_file}\ncafile {tls.ca_file}\n"
                )

    def _password_file(self, users: dict[str, str]) -> Path:
        """A Mosquitto password file (hashed by mosquitto_passwd) for `users`."""
        path = self.workdir / "passwords"
        path.write_text("".join(f"{name}:{password}\n" for name, password in users.items()))
        path.chmod(0o600)
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        subprocess.run([tool, "-U", str(path)], check=True, capture_output=True, timeout=30)
        return path

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return
        log = (self.workdir / "mosquitto.log").open("ab")
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise GatewayError(
                    f"mosquitto exited with {self._process.returncode}; see {self.workdir}/mosquitto.log"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise GatewayError(f"mosquitto did not listen on port {self.port} within {timeout_s} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop gracefully (SIGTERM: it saves its persistence file), kill if it hangs."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
