"""The gateway's signing key on disk: PKCS#8 private key (mode 0600) and SubjectPublicKeyInfo public key.

Layout of a key directory (docs/wire-format.md, "Keys"):
    gateway.key.pem              the current private key, mode 0600
    gateway.pub.pem              the current public key (give it to the backend)
    previous/<kid-hex>.key.pem   keys replaced by `rotate`, kept until the operator deletes them
    previous/<kid-hex>.pub.pem
    rollover.pending             after `rotate`: the hex kid the backend knows; the agent's next batch
                                 is signed by that key and announces the current one (docs/wire-format.md
                                 3.4), then the agent deletes this file
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.public_key_files import load_public_pem
from gateway.wire.batch import KeyRollover
from gateway.wire.rollover import make_rollover
from gateway.wire.trusted_keys import kid_for, kid_hint
from kernel.errors import ConfigError

PRIVATE_NAME = "gateway.key.pem"
PUBLIC_NAME = "gateway.pub.pem"
PREVIOUS_DIR = "previous"
ROLLOVER_PENDING = "rollover.pending"
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
    """Move the current pair to previous/<kid>.*.pem, write a new one owned and moded like the old
    one (run as root, the service user can still read it) and mark the rollover pending; returns the
    old kid."""
    private_path, public_path = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    old_kid = kid_for(load_public_key(public_path))
    previous = directory / PREVIOUS_DIR
    new_private, new_public = directory / f".{PRIVATE_NAME}.new", directory / f".{PUBLIC_NAME}.new"
    try:
        like_private, like_public = private_path.stat(), public_path.stat()
        previous.mkdir(mode=0o700, exist_ok=True)
        _same_owner(previous, like_private, mode=0o700)
        for leftover in (new_private, new_public):
            leftover.unlink(missing_ok=True)  # from a rotation interrupted before its renames
        _write_pair(_key_with_a_new_hint(directory, old_kid), new_private, new_public)
        _same_owner(new_private, like_private)
        _same_owner(new_public, like_public)
        _mark_rollover(directory, old_kid, like_private)
        private_path.replace(previous / f"{old_kid.hex()}.key.pem")
        public_path.replace(previous / f"{old_kid.hex()}.pub.pem")
        new_private.replace(private_path)
        new_public.replace(public_path)
    except OSError as exc:
        raise ConfigError(f"cannot rotate the key pair in {directory}: {exc}") from None
    return private_path, public_path, old_kid


def _key_with_a_new_hint(directory: Path, old_kid: bytes) -> Ed25519PrivateKey:
    """A new key whose kid hint (first 4 bytes) none of this gateway's earlier keys has: a backend
    refuses a second key with a registered key's hint (docs/wire-format.md 7), so a rollover to one
    would never be enrolled. The odds are 2^-32 a rotation; drawing again costs nothing."""
    taken = {kid_hint(old_kid)}
    for pem in (directory / PREVIOUS_DIR).glob("*.pub.pem"):
        try:  # named <kid-hex>.pub.pem by the rotation that moved it
            taken.add(kid_hint(bytes.fromhex(pem.name.removesuffix(".pub.pem"))))
        except ValueError:
            continue  # not a file a rotation wrote
    while True:
        key = Ed25519PrivateKey.generate()
        if kid_hint(kid_for(key.public_key())) not in taken:
            return key


def _mark_rollover(directory: Path, old_kid: bytes, like: os.stat_result) -> None:
    """Name the kid the backend knows, unless a rollover from an older one is still pending: two
    rotations before a batch was sealed announce the newest key from the key the backend knows."""
    marker = directory / ROLLOVER_PENDING
    if marker.exists():
        return
    tmp = directory / f".{ROLLOVER_PENDING}.new"
    tmp.write_text(old_kid.hex() + "\n", encoding="ascii")
    _same_owner(tmp, like)
    tmp.replace(marker)


def _same_owner(path: Path, like: os.stat_result, mode: int | None = None) -> None:
    """Give `path` the owner, group and mode of `like` (the owner only when we are root)."""
    if os.geteuid() == 0:
        os.chown(path, like.st_uid, like.st_gid)
    os.chmod(path, stat.S_IMODE(like.st_mode) if mode is None else mode)


@dataclass(frozen=True)
class PendingRollover:
    """A rotation the backend has not been told of: the next batch is signed by `old_key` and carries
    `statement`; `complete` once that batch is sealed into the outbox."""

    old_key: Ed25519PrivateKey
    old_kid: bytes
    statement: KeyRollover
    marker: Path

    def complete(self) -> None:
        """The statement is sealed into a batch: later batches are signed by the current key only."""
        self.marker.unlink(missing_ok=True)


def pending_rollover(key_file: Path, gateway_id: str) -> PendingRollover | None:
    """The rollover `rotate` left pending beside `key_file`, or None; ConfigError when the marker
    names a key that is not under previous/."""
    directory = key_file.parent
    marker = directory / ROLLOVER_PENDING
    try:
        text = marker.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {marker}: {exc}") from None
    if not _is_hex(text):
        raise ConfigError(f"{marker} must hold the hex kid of the previous key, got {text!r}")
    old_kid = bytes.fromhex(text)
    old_key = load_private_key(directory / PREVIOUS_DIR / f"{text}.key.pem")
    statement = make_rollover(gateway_id, old_kid, load_private_key(key_file))
    return PendingRollover(old_key, old_kid, statement, marker)


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
