"""LoRaWAN 1.0.x cryptography: AES-CMAC MICs, the FRMPayload keystream, join keys.

Layouts follow the LoRaWAN 1.0.2 specification (sections 4.3.3, 4.4, 6.2.4, 6.2.5).
Keys are held by `SessionKey`, which prepares the AES objects once: a busy gateway verifies
thousands of frames per second with the same few keys.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from kernel.errors import ConfigError

UPLINK = 0
DOWNLINK = 1


class SessionKey:
    """One AES-128 key, with a prepared CMAC and ECB cipher; never shows the key in repr."""

    __slots__ = ("_cmac", "_ecb", "_key")

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise ConfigError(f"a LoRaWAN key has 16 bytes, got {len(key)}")
        self._key = bytes(key)
        self._cmac = cmac.CMAC(algorithms.AES(self._key))
        self._ecb = Cipher(algorithms.AES(self._key), modes.ECB()).encryptor()

    @classmethod
    def from_hex(cls, text: str) -> SessionKey:
        """Parse a 32-digit hex key (spaces and colons allowed)."""
        cleaned = text.replace(" ", "").replace(":", "")
        try:
            return cls(bytes.fromhex(cleaned))
        except ValueError:
            raise ConfigError("a LoRaWAN key must be 32 hex digits") from None

    def __repr__(self) -> str:
        return "SessionKey(<hidden>)"

    def cmac(self, data: bytes) -> bytes:
        """AES-CMAC (RFC 4493) of `data` under this key."""
        mac = self._cmac.copy()
        mac.update(data)
        return mac.finalize()

    def encrypt_blocks(self, data: bytes) -> bytes:
        """AES-ECB encryption of whole 16-byte blocks."""
        return self._ecb.update(data)

    def decrypt_blocks(self, data: bytes) -> bytes:
        """AES-ECB decryption of whole 16-byte blocks (the join-accept's 'encryption')."""
        decryptor = Cipher(algorithms.AES(self._key), modes.ECB()).decryptor()
        return decryptor.update(data) + decryptor.finalize()


_B0 = struct.Struct("<B4xBIIxB")
_AI = struct.Struct("<B4xBIIxB")


def data_mic(key: SessionKey, msg: bytes, direction: int, devaddr: int, fcnt32: int) -> bytes:
    """MIC of a data frame: the first 4 bytes of CMAC(NwkSKey, B0 | MHDR..FRMPayload)."""
    b0 = _B0.pack(0x49, direction, devaddr, fcnt32 & 0xFFFFFFFF, len(msg))
    return key.cmac(b0 + msg)[:4]


def join_mic(key: SessionKey, msg: bytes) -> bytes:
    """MIC of a join-request or (plain) join-accept: CMAC(AppKey, msg)[0:4]."""
    return key.cmac(msg)[:4]


def frm_cipher(key: SessionKey, payload: bytes, direction: int, devaddr: int, fcnt32: int) -> bytes:
    """Encrypt or decrypt an FRMPayload (the same XOR keystream both ways)."""
    if not payload:
        return b""
    blocks = (len(payload) + 15) // 16
    counters = b"".join(
        _AI.pack(0x01, direction, devaddr, fcnt32 & 0xFFFFFFFF, i) for i in range(1, blocks + 1)
    )
    stream = key.encrypt_blocks(counters)
    n = len(payload)
    plain = int.from_bytes(payload, "big") ^ int.from_bytes(stream[:n], "big")
    return plain.to_bytes(n, "big")


def derive_session_keys(
    app_key: SessionKey, app_nonce: int, net_id: int, dev_nonce: int
) -> tuple[bytes, bytes]:
    """(NwkSKey, AppSKey) of a LoRaWAN 1.0 join, from the AppKey and the join nonces."""
    tail = app_nonce.to_bytes(3, "little") + net_id.to_bytes(3, "little")
    tail += dev_nonce.to_bytes(2, "little")
    pad = bytes(7)
    both = app_key.encrypt_blocks(b"\x01" + tail + pad + b"\x02" + tail + pad)
    return both[:16], both[16:]


def encrypt_join_accept(app_key: SessionKey, plain_after_mhdr: bytes) -> bytes:
    """The join-accept body with its MIC, 'encrypted' as the spec says: with AES *decrypt*."""
    if len(plain_after_mhdr) % 16:
        raise ValueError("join-accept body plus MIC must be 16 or 32 bytes")
    return app_key.decrypt_blocks(plain_after_mhdr)


def decrypt_join_accept(app_key: SessionKey, cipher_after_mhdr: bytes) -> bytes:
    """Undo `encrypt_join_accept` (what the device does): AES encrypt."""
    return app_key.encrypt_blocks(cipher_after_mhdr)
