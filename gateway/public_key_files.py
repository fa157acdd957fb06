"""Public keys on disk: one PEM file, or a backend's key directory read into a `wire.Keyring`.

The file reading lives here, beside the agent's own key files (gateway/signing_key.py), so that gateway/wire
stays pure (architecture.md rule 3): the receiver and the tools read the disk, the wire code checks bytes.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.wire.trusted_keys import Keyring
from kernel.errors import ConfigError

#: a public key file in a key directory is registered as retired when its name ends so
RETIRED_SUFFIX = ".retired.pem"


def load_key_directory(path: Path) -> Keyring:
    """A keyring from public key PEM files: `<gateway-id>.pem` or `<gateway-id>/<any name>.pem`.

    A file whose name ends in `.retired.pem` is registered as retired.
    """
    if not path.is_dir():
        raise ConfigError(f"key directory {path} does not exist or is not a directory")
    ring = Keyring()
    for pem in sorted(path.glob("*.pem")):
        ring.add(_gateway_of(pem.name), load_public_pem(pem), retired=_is_retired(pem))
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        for pem in sorted(sub.glob("*.pem")):
            ring.add(sub.name, load_public_pem(pem), retired=_is_retired(pem))
    return ring


def load_public_pem(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a SubjectPublicKeyInfo PEM file (ConfigError when it is not one)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read public key {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}, expected an Ed25519 public key")
    return key


def _is_retired(pem: Path) -> bool:
    return pem.name.endswith(RETIRED_SUFFIX)


def _gateway_of(name: str) -> str:
    suffix = RETIRED_SUFFIX if name.endswith(RETIRED_SUFFIX) else ".pem"
    return name[: -len(suffix)]
