"""The compiled integer-column coder (issue 17): gateway/wire/_ctxmix.so, built from ctxmix.c, through ctypes.

A plain shared library rather than a CPython extension (docs/decisions.md, "A compiled coder as a plain
shared library"): it is cross-compiled for arm64 without the target's Python headers. It is loaded on first
use, not on import, so a gateway whose library is missing still starts, verifies the formats that need no
coder and says what is wrong in `gateway selftest` (check "coder") and `gateway wire coder`.

The coder (docs/wire-format.md section 4.1) takes three parameters, `(period, history, modulus)`:
the series' readings per day when read at one regular interval (0: none, at most 1440), whether the
column holds steps (0) or levels (1), and the modulus of circular steps (0: none, at most 2^32).

Errors: a library that is missing, unloadable or of another ABI is `CoderUnavailable` (naming how to
rebuild); a column the library refuses to decode is `MalformedBatch`; parameters the library refuses
when encoding are a `ValueError` (the encoder's own mistake, not the input's).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.wire.intcol import MAX_VALUES
from kernel.errors import GatewayError, MalformedBatch

#: the ABI version this loader speaks; ctxmix_abi() of the library must return it (1 was the
#: build stand-in, zigzag varints under one parameter)
ABI = 2
LIBRARY = Path(__file__).with_name("_ctxmix.so")
REBUILD = (
    "rebuild it: `make setup` in a source tree, or reinstall the package "
    "(`pip install --force-reinstall rostock-gateway`, needs a C compiler; docs/service.md)"
)
#: the output buffer tried first, per value: random int64 values take about 8 bytes, sensor steps < 1
FIRST_BYTES_PER_VALUE = 16
#: the most one value can take: 128 binary decisions of at most 4 bytes each (wire-format.md 4.1)
MAX_BYTES_PER_VALUE = 4 * 128
#: ctxmix_decode's and ctxmix_encode's negative results
FAILURES = {
    -1: "output capacity too small",
    -2: "parameters (or a count beyond 2^24 values) refused",
    -3: "a value outside int64",
    -4: "no memory for the coder's state",
}
CAPACITY = -1
NO_MEMORY = -4
_INT64_P = np.ctypeslib.ndpointer(dtype=np.int64, ndim=1, flags="C_CONTIGUOUS")
_UINT8_P = np.ctypeslib.ndpointer(dtype=np.uint8, ndim=1, flags="C_CONTIGUOUS")


class CoderUnavailable(GatewayError):
    """The coder library is missing, cannot be loaded or speaks another ABI: the install is broken."""


@dataclass(frozen=True)
class CoderLibrary:
    """The loaded library: where it is, its ABI, and its two functions."""

    path: Path
    abi: int
    _encode: Any
    _decode: Any

    def encode(self, values: npt.NDArray[np.int64], params: Sequence[int]) -> bytes:
        """The coded column of `values` (one-dimensional int64)."""
        column = np.ascontiguousarray(values, dtype=np.int64)
        if column.ndim != 1:
            raise ValueError(f"a column is one-dimensional, not {column.ndim}-dimensional")
        parameters = _parameters(params)
        for per_value in (FIRST_BYTES_PER_VALUE, MAX_BYTES_PER_VALUE):
            cap = per_value * len(column) + 1  # the flush byte
            out = np.empty(cap, dtype=np.uint8)
            written = int(self._encode(column, len(column), parameters, len(parameters), out, cap))
            if written != CAPACITY:
                break
        if written == NO_MEMORY:
            raise MemoryError("ctxmix_encode: no memory for the coder's state")
        if written < 0:
            raise ValueError(f"ctxmix_encode: {FAILURES.get(written, f'error {written}')} (params {params})")
        return out[:written].tobytes()

    def decode(self, data: bytes, n: int, params: Sequence[int]) -> npt.NDArray[np.int64]:
        """The `n` values of a coded column; MalformedBatch for bytes that are not one."""
        if not 0 <= n <= MAX_VALUES:  # a context-mixing coder may spend far less than a byte a value
            raise MalformedBatch(
                f"a ctxmix column of {n} values, more than the {MAX_VALUES} a batch may hold"
            )
        try:
            parameters = _parameters(params)
        except ValueError as exc:
            raise MalformedBatch(f"ctxmix column parameters {params}: {exc}") from exc
        source = np.frombuffer(data, dtype=np.uint8)
        out = np.empty(n, dtype=np.int64)
        status = int(self._decode(source, len(source), n, parameters, len(parameters), out))
        if status == NO_MEMORY:
            raise MemoryError("ctxmix_decode: no memory for the coder's state")
        if status != 0:
            reason = FAILURES.get(status, f"error {status}")
            raise MalformedBatch(f"ctxmix column of {len(data)} bytes, {n} values: {reason}")
        return out


def _parameters(params: Sequence[int]) -> npt.NDArray[np.int64]:
    try:
        return np.array(params, dtype=np.int64).reshape(-1)
    except (OverflowError, TypeError, ValueError) as exc:
        raise ValueError(f"parameters must be int64 integers: {exc}") from exc


def load(path: Path = LIBRARY) -> CoderLibrary:
    """Load the library at `path` and check its ABI; CoderUnavailable (naming the fix) when it cannot be used."""
    try:
        handle = ctypes.CDLL(str(path))
        abi_of, encode, decode = handle.ctxmix_abi, handle.ctxmix_encode, handle.ctxmix_decode
    except (OSError, AttributeError) as exc:
        raise CoderUnavailable(f"the coder library {path} cannot be used ({exc}); {REBUILD}") from exc
    abi_of.argtypes, abi_of.restype = [], ctypes.c_long
    abi = int(abi_of())
    if abi != ABI:
        raise CoderUnavailable(f"the coder library {path} has ABI {abi}, this gateway needs {ABI}; {REBUILD}")
    long_ = ctypes.c_long
    encode.argtypes = [_INT64_P, long_, _INT64_P, long_, _UINT8_P, long_]
    encode.restype = long_
    decode.argtypes = [_UINT8_P, long_, long_, _INT64_P, long_, _INT64_P]
    decode.restype = long_
    return CoderLibrary(path, abi, encode, decode)


@functools.cache
def library() -> CoderLibrary:
    """The installed library, loaded and probed once (a failure is not cached: the next call tries
    again). The probe is `self_check`'s: a library that writes other bytes than section 4.1's coder
    (miscompiled, or built from other source) is refused before it writes a batch, since a receiver
    on another machine would decode those bytes into other values."""
    path = LIBRARY
    coder = load(path)
    _probe(coder, path)
    return coder


def encode(values: npt.NDArray[np.int64], params: Sequence[int]) -> bytes:
    """The coded column of `values` with the installed library."""
    return library().encode(values, params)


def decode(data: bytes, n: int, params: Sequence[int]) -> npt.NDArray[np.int64]:
    """The `n` values of a coded column with the installed library."""
    return library().decode(data, n, params)


#: the probe column of `self_check`: a step, a ramp, the int64 extremes (the ends of the arithmetic)
_PROBE = np.concatenate(
    [
        np.repeat(np.int64(215), 40),
        np.arange(-500, 500, 7, dtype=np.int64),
        np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max, 0], dtype=np.int64),
    ]
)
_PROBE_PARAMS = (24, 1, 0)
#: SHA-256 of the probe coded as docs/wire-format.md section 4.1 specifies (the tests' plain-Python
#: coder writes these bytes too: test_ctxmix_reference.py), whatever machine the library runs on
PROBE_SHA256 = "cc0f5ef7543f85c6702b394ce9798657d3ce497a9d0e3f9599dbca3b1a99721d"


def self_check(path: Path = LIBRARY) -> str:
    """Load the library and round-trip a probe column: a line for `gateway selftest`, or CoderUnavailable."""
    coder = load(path)
    coded = _probe(coder, path)
    return (
        f"{path} loaded, ABI {coder.abi}, {len(_PROBE)} values round-trip in {len(coded)} bytes,"
        f" the specified ones (sha256 {PROBE_SHA256[:16]})"
    )


def _probe(coder: CoderLibrary, path: Path) -> bytes:
    """The probe column coded by `coder`, checked against the specified bytes and decoded back;
    CoderUnavailable (naming the fix) when either fails."""
    coded = coder.encode(_PROBE, _PROBE_PARAMS)
    if hashlib.sha256(coded).hexdigest() != PROBE_SHA256:
        raise CoderUnavailable(
            f"the coder library {path} writes other bytes than the format's coder"
            f" (probe sha256 {hashlib.sha256(coded).hexdigest()[:16]}, not {PROBE_SHA256[:16]}); {REBUILD}"
        )
    try:
        back = coder.decode(coded, len(_PROBE), _PROBE_PARAMS)
    except MalformedBatch as exc:
        raise CoderUnavailable(
            f"the coder library {path} cannot decode its own column ({exc}); {REBUILD}"
        ) from exc
    if not np.array_equal(back, _PROBE):
        raise CoderUnavailable(f"the coder library {path} does not round-trip a column; {REBUILD}")
    return coded
