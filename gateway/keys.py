"""The gateway's signing key on disk: PKCS#8 private key (mode 0600) and SubjectPublicKeyInfo public key.

Layout of a key directory (docs/wire-format.md, "Keys"):
    gateway.key.pem              the current private key, mode 0600
    gateway.pub.pem              the current public key (give it to the backend)
    previous/<kid-hex>.key.pem   keys replaced by `rotate`, kept until the operator deletes them
    previous/<kid-hex>.pub.pem
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import ConfigError
from gateway.wire.keyring import kid_for, load_public_pem

PRIVATE_NAME = "gateway.key.pem"
PUBLIC_NAME = "gateway.pub.pem"
PREVIOUS_DIR = "previous"
#: permission bits that must be clear on a private key file (like OpenSSH, refuse group/other access)
_FORBIDDEN_MODE = stat.S_IRWXG | stat.S_IRWXO


@dataclass(frozen=True)
class KeyDirectory:
    """What `gateway keys show` reports about a key directory."""

    private_path: Path
    public_path: Path
    public_pem: str
    kid: bytes
    previous_kids: tuple[bytes, ...]


def generate_keypair(directory: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair into `directory`; refuses to overwrite an existing key."""
    private_path, public_path = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(f"{path} already exists; refusing to overwrite a key (use rotate)")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_pair(Ed25519PrivateKey.generate(), private_path, public_path)
    except OSError as exc:
        raise ConfigError(f"cannot write a key pair into {directory}: {exc}") from None
    return private_path, public_path


def rotate_keypair(directory: Path) -> tuple[Path, Path, bytes]:
    """Move the current pair to previous/<kid>.*.pem and write a new one; returns the old kid."""
    private_path, public_path = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    old_kid = kid_for(load_public_key(public_path))
    previous = directory / PREVIOUS_DIR
    new_private, new_public = directory / f".{PRIVATE_NAME}.new", directory / f".{PUBLIC_NAME}.new"
    try:
        previous.mkdir(mode=0o700, exist_ok=True)
        for leftover in (new_private, new_public):
            leftover.unlink(missing_ok=True)  # from a rotation interrupted before its renames
        _write_pair(Ed25519PrivateKey.generate(), new_private, new_public)
        private_path.replace(previous / f"{old_kid.hex()}.key.pem")
        public_path.replace(previous / f"{old_kid.hex()}.pub.pem")
        new_private.replace(private_path)
        new_public.replace(public_path)
    except OSError as exc:
        raise ConfigError(f"cannot rotate the key pair in {directory}: {exc}") from None
    return private_path, public_path, old_kid


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The private key at `path`; ConfigError when it is group/other accessible, unreadable or invalid."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read private key {path}: {exc.strerror or exc}") from None
    if mode & _FORBIDDEN_MODE:
        raise ConfigError(
            f"private key {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o});"
            f" run: chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"cannot read private key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not an unencrypted PKCS#8 PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}, expected an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in a SubjectPublicKeyInfo PEM file; ConfigError otherwise."""
    return load_public_pem(path)


def describe(directory: Path) -> KeyDirectory:
    """The current public key, its kid and the kids of the keys rotated out before it."""
    public_path = directory / PUBLIC_NAME
    public = load_public_key(public_path)
    previous = directory / PREVIOUS_DIR
    previous_kids = tuple(
        bytes.fromhex(p.name.removesuffix(".pub.pem"))
        for p in sorted(previous.glob("*.pub.pem"))
        if _is_hex(p.name.removesuffix(".pub.pem"))
    )
    return KeyDirectory(
        private_path=directory / PRIVATE_NAME,
        public_path=public_path,
        public_pem=public_pem(public),
        kid=kid_for(public),
        previous_kids=previous_kids,
    )


def public_pem(public_key: Ed25519PublicKey) -> str:
    """SubjectPublicKeyInfo PEM text of a public key."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _write_pair(key: Ed25519PrivateKey, private_path: Path, public_path: Path) -> None:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # created 0600 from the start: there is no moment where the key is readable by others
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private)
    public_path.write_text(public_pem(key.public_key()), encoding="ascii")


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return bool(text)
