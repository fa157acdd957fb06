"""What the network must remember across restarts: frame counters, OTAA sessions, used DevNonces.

Kept as one small JSON file per packet-forwarder server under DriverSpec.state_dir, written
atomically (temp file, fsync, rename) with mode 0600 because OTAA session keys are in it.
`NetworkState` itself is plain data; `load_state`/`save_state` are the only I/O (callers run
them in a thread).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel.errors import StorageError

STATE_VERSION = 1
#: DevNonces remembered per device (LoRaWAN 1.0 nonces are random: keep a bounded history)
DEV_NONCE_HISTORY = 512


@dataclass
class DeviceState:
    """Per-device memory: last accepted 32-bit FCntUp and, for OTAA, the joined session."""

    fcnt_up: int | None = None
    devaddr: int | None = None
    nwkskey: str | None = field(default=None, repr=False)
    appskey: str | None = field(default=None, repr=False)
    dev_nonces: list[int] = field(default_factory=list)

    def remember_nonce(self, nonce: int) -> None:
        """Record a DevNonce as used, forgetting the oldest beyond the history bound."""
        self.dev_nonces.append(nonce)
        del self.dev_nonces[:-DEV_NONCE_HISTORY]


@dataclass
class NetworkState:
    """All devices' memory plus the join nonce counter; `dirty` says a save is due."""

    devices: dict[str, DeviceState] = field(default_factory=dict)
    app_nonce: int = 0
    dirty: bool = False

    def device(self, device_id: str) -> DeviceState:
        """The state of one device, created empty on first use."""
        state = self.devices.get(device_id)
        if state is None:
            state = self.devices[device_id] = DeviceState()
        return state

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready snapshot."""
        return {
            "version": STATE_VERSION,
            "app_nonce": self.app_nonce,
            "devices": {
                device_id: {
                    "fcnt_up": s.fcnt_up,
                    "devaddr": s.devaddr,
                    "nwkskey": s.nwkskey,
                    "appskey": s.appskey,
                    "dev_nonces": list(s.dev_nonces),
                }
                for device_id, s in self.devices.items()
            },
        }

    @classmethod
    def from_json(cls, obj: Any) -> NetworkState:
        """Rebuild from `to_json` output; StorageError when it is not that."""
        try:
            if obj["version"] != STATE_VERSION:
                raise StorageError(f"LoRaWAN state version {obj['version']} is not supported")
            devices = {
                str(device_id): DeviceState(
                    fcnt_up=d["fcnt_up"],
                    devaddr=d["devaddr"],
                    nwkskey=d["nwkskey"],
                    appskey=d["appskey"],
                    dev_nonces=[int(n) for n in d["dev_nonces"]],
                )
                for device_id, d in obj["devices"].items()
            }
            return cls(devices=devices, app_nonce=int(obj["app_nonce"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StorageError(f"LoRaWAN state file is damaged: {exc!r}") from None


def load_state(path: Path) -> NetworkState:
    """Read the state file; an absent file is a fresh network."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return NetworkState()
    except OSError as exc:
        raise StorageError(f"{path}: cannot read LoRaWAN state: {exc.strerror}") from None
    try:
        obj = json.loads(text)
    except ValueError:
        raise StorageError(f"{path}: LoRaWAN state is not JSON") from None
    return NetworkState.from_json(obj)


def save_state(path: Path, snapshot: dict[str, Any]) -> None:
    """Write a `to_json` snapshot atomically (readers see the old or the new file, never half)."""
    data = json.dumps(snapshot, separators=(",", ":")).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"{path}: cannot write LoRaWAN state: {exc.strerror}") from None
