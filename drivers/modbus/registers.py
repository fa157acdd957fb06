"""Register decoding and encoding (sans-I/O): 16-bit words in, typed values out.

Byte and word order names follow the common "ABCD" convention, where A is the most significant
byte of a 32-bit value as it would be sent big-endian (Modbus Application Protocol V1.1b3 sends
each register big-endian; the order of registers in multi-register values is vendor specific):

- ABCD: registers in order, bytes in order (big-endian, the default of most meters);
- CDAB: registers swapped, bytes in order ("word swap", common on PLCs);
- BADC: registers in order, bytes swapped within each register;
- DCBA: registers swapped and bytes swapped (little-endian).

For 64-bit values the same rule applies to four registers (CDAB reverses all four).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence

from kernel.errors import ProtocolError


class RegisterKind(enum.StrEnum):
    """The four Modbus data tables and the function code that reads each."""

    COIL = "coil"
    DISCRETE = "discrete"
    HOLDING = "holding"
    INPUT = "input"

    @property
    def is_bit(self) -> bool:
        """Coils and discrete inputs are read as bits, the others as 16-bit registers."""
        return self in (RegisterKind.COIL, RegisterKind.DISCRETE)


class DataType(enum.StrEnum):
    """How a field's registers are interpreted."""

    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"
    BITS = "bits"


class WordOrder(enum.StrEnum):
    """Byte and word order of multi-byte values (see the module docstring)."""

    ABCD = "ABCD"
    DCBA = "DCBA"
    BADC = "BADC"
    CDAB = "CDAB"


_STRUCT = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.INT64: ">q",
    DataType.UINT64: ">Q",
    DataType.FLOAT32: ">f",
    DataType.FLOAT64: ">d",
}

_WIDTH = {
    DataType.BOOL: 1,
    DataType.BITS: 1,
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT64: 4,
}


def register_count(dtype: DataType, length: int = 1) -> int:
    """Number of registers (or bits, for a bool in a bit table) a value occupies."""
    if dtype is DataType.STRING:
        return length
    return _WIDTH[dtype]


def _swap_bytes(order: WordOrder) -> bool:
    return order in (WordOrder.BADC, WordOrder.DCBA)


def _swap_words(order: WordOrder) -> bool:
    return order in (WordOrder.CDAB, WordOrder.DCBA)


def words_to_bytes(words: Sequence[int], order: WordOrder) -> bytes:
    """Arrange registers as the big-endian byte string of the value they hold."""
    for word in words:
        if not 0 <= word <= 0xFFFF:
            raise ProtocolError(f"register value {word!r} is not a 16-bit word")
    ordered = list(reversed(words)) if _swap_words(order) else list(words)
    raw = b"".join(w.to_bytes(2, "big") for w in ordered)
    if _swap_bytes(order):
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    return raw


def bytes_to_words(raw: bytes, order: WordOrder) -> list[int]:
    """Inverse of `words_to_bytes`: the registers a device sends for a big-endian value."""
    if _swap_bytes(order):
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return list(reversed(words)) if _swap_words(order) else words


def decode_words(
    words: Sequence[int],
    dtype: DataType,
    order: WordOrder = WordOrder.ABCD,
    *,
    bit: int = 0,
    width: int = 1,
) -> int | float | str:
    """Decode the registers of one value; raises ProtocolError when they do not fit the type.

    Strings keep the order's byte swap (BADC/DCBA) and drop trailing NULs and spaces.
    A bit field takes `width` bits starting at bit `bit` (0 = least significant) of one register.
    """
    if dtype is DataType.STRING:
        if _swap_words(order):
            order = WordOrder.BADC if _swap_bytes(order) else WordOrder.ABCD
        raw = words_to_bytes(words, order)
        return raw.rstrip(b"\x00 ").decode("latin-1")
    expected = _WIDTH[dtype]
    if len(words) != expected:
        raise ProtocolError(f"{dtype} needs {expected} register(s), got {len(words)}")
    raw = words_to_bytes(words, order)
    if dtype in (DataType.BOOL, DataType.BITS):
        value = int.from_bytes(raw, "big")
        if dtype is DataType.BOOL:
            return int(value != 0)
        return (value >> bit) & ((1 << width) - 1)
    decoded: int | float = struct.unpack(_STRUCT[dtype], raw)[0]
    return decoded


def encode_value(
    value: float | str,
    dtype: DataType,
    order: WordOrder = WordOrder.ABCD,
    *,
    length: int = 1,
    bit: int = 0,
) -> list[int]:
    """Registers a device would send for `value` (used by the simulators and the tests)."""
    if dtype is DataType.STRING:
        raw = str(value).encode("latin-1")[: 2 * length].ljust(2 * length, b"\x00")
        if _swap_words(order):
            order = WordOrder.BADC if _swap_bytes(order) else WordOrder.ABCD
        return bytes_to_words(raw, order)
    if isinstance(value, str):
        raise ProtocolError(f"{dtype} cannot hold the text {value!r}")
    if dtype is DataType.BOOL:
        return [1 if value else 0]
    if dtype is DataType.BITS:
        return bytes_to_words((int(value) << bit).to_bytes(2, "big"), order)
    number: int | float = value if dtype.value.startswith("float") else round(value)
    try:
        raw = struct.pack(_STRUCT[dtype], number)
    except struct.error as exc:
        raise ProtocolError(f"{value!r} does not fit {dtype}") from exc
    return bytes_to_words(raw, order)


def scaled(raw: int | float, scale: float, offset: float) -> float:
    """The engineering value of a raw number: raw * scale + offset."""
    return float(raw) * scale + offset
