"""The one error tree of the agent: third-party exceptions are translated into it at the boundaries."""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(GatewayError):
    """A configuration file or value is invalid."""


class AgentRunning(ConfigError):
    """Another agent holds the state directory: like a bad configuration, restarting cannot help (exit 2)."""


class KidHintTaken(ConfigError):
    """A key cannot be registered: another registered key starts with the same 4 bytes, the kid hint
    compact envelopes name keys by (docs/wire-format.md 7). The gateway needs a new key."""


class DeviceError(GatewayError):
    """A bus or device could not be opened, read or written (unplugged, timeout, I/O error)."""


class ProtocolError(GatewayError):
    """Bytes from a device or peer do not follow the protocol (bad checksum, garbage, bad frame)."""


class StorageError(GatewayError):
    """The on-gateway buffer could not store or read data."""


class UplinkError(GatewayError):
    """The connection to the backend failed or a batch could not be delivered."""


class WireError(ProtocolError):
    """A signed batch could not be verified or decoded."""


class BadSignature(WireError):
    """The COSE_Sign1 signature does not verify with the key named by its kid."""


class UnknownKey(WireError):
    """The kid of a batch names no registered (or a retired) public key."""


class UnsupportedVersion(WireError):
    """The batch body declares a format version this library does not read."""


class MalformedBatch(WireError):
    """The bytes are not a well-formed signed batch of the documented format."""


class UnknownCatalogue(WireError):
    """A verified batch refers to a series catalogue the reader has not seen (wire version 4): keep it
    until a batch declaring that catalogue arrives (docs/wire-format.md, section 3.5)."""

    def __init__(self, catalogue: bytes) -> None:
        super().__init__(f"series catalogue {catalogue.hex()} is unknown here")
        self.catalogue = catalogue


def first_leaf(exc: BaseException) -> BaseException:
    """The first real exception inside the groups a TaskGroup wraps it in."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
