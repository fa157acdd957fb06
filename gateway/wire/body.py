"""The batch body: a CBOR map (format version, gateway id, seq, series table, columns...) in zstd."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import cbor2
import zstandard

from gateway.wire import intcol, zstd_contexts
from gateway.wire.batch import (
    EPOCH_LENGTH,
    FORMAT_VERSION,
    NO_EPOCH,
    READABLE_VERSIONS,
    Event,
    Gap,
    KeyRollover,
    ReadingColumns,
    SeriesInfo,
    WindowColumns,
)
from gateway.wire.catalogue import (
    CATALOGUE_ID_LENGTH,
    CatalogueLookup,
    catalogue_id_of_cbor,
    series_rows,
    table_cbor,
)
from gateway.wire.cbor_limits import MAX_ITEMS, check_items
from gateway.wire.implied import drop_counts, restore_counts
from gateway.wire.readings import decode_readings, encode_readings
from gateway.wire.scale import resolution_of
from gateway.wire.series_codes import compact_row, expanded_row
from gateway.wire.window_codec import decode_windows, encode_windows
from kernel.errors import MalformedBatch, UnknownCatalogue, UnsupportedVersion, WireError

# keys of the body map (docs/wire-format.md, "Body")
VERSION, GATEWAY, SEQ, CREATED, SERIES, READINGS, WINDOWS, GAPS, EVENTS, EPOCH, ROLLOVER, CATALOGUE = range(
    12
)
#: zstd level: 12 (binary-tree match finder) finds repeats in byte-plane columns that 9 misses
#: (hourly dew point 2,718 -> 2,525 bytes) and is within 0.3 % of 19 on Huffman-coded bodies (the
#: NEON batches) at a third of its time
ZSTD_LEVEL = 12
#: a body that compresses to at most this many bytes is also compressed at each of
#: SMALL_BODY_LEVELS (see `_smallest_frame`)
SMALL_BODY = 2048
SMALL_BODY_LEVELS = (3, 6, 9, 12, 19)
#: a body with at least DEEP_FROM bytes of columns left to zstd (varints, byte planes) is
#: compressed at DEEP_LEVEL: on the hourly more-series 1.4 % smaller than at 12, for three times
#: the compression time (0.08 instead of 0.03 us per reading); Huffman-coded bodies gain 0.3 %
DEEP_LEVEL = 19
DEEP_FROM = 1024
#: beyond this body size level 19 slows down per byte (larger windows): a batch of a million
#: readings stays at ZSTD_LEVEL
DEEP_UP_TO = 1 << 20
#: a decoded body larger than this is refused (a batch is a few kB to a few MB)
MAX_BODY_BYTES = 64 * 1024 * 1024
#: upper bound on readings (and on windows) per batch: decoding takes about 250 bytes of transient
#: memory per reading, so even a validly signed but hostile batch stays within a few hundred MB
MAX_ROWS = intcol.MAX_VALUES
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

T = TypeVar("T")
# Frames (zstd_contexts.compress) carry no checksum (the signature covers the payload) but keep the
# content size: without it a body is 1-4 bytes smaller, but python-zstandard's one-shot `decompress`
# (what a receiver written from docs/wire-format.md is likely to call) refuses the frame.


def encode_batch(
    *,
    gateway_id: str,
    seq: int,
    created_ms: int,
    series: Sequence[SeriesInfo],
    readings: ReadingColumns,
    windows: WindowColumns | None = None,
    gaps: Sequence[Gap] = (),
    events: Sequence[Event] = (),
    epoch: bytes = NO_EPOCH,
    rollover: KeyRollover | None = None,
    refer_to_catalogue: bool = False,
    name_gateway: bool = False,
) -> bytes:
    """The compressed body of one batch (sign it with `sign`); readings travel sorted by series, ts.

    `epoch` is the buffer database's random id (tools and tests may leave NO_EPOCH); `rollover`
    announces the gateway's next key in a batch signed by its current one. With `refer_to_catalogue`
    the body carries only the id of `series`' catalogue instead of the table (a batch before it must
    have declared it: section 3.5).

    Version 5 leaves `gateway_id` out: a receiver takes the gateway its signing key is registered
    for. `name_gateway` writes it anyway, for readers that verify with a bare public key (tools);
    a receiver still checks it against the key. The creation time travels in whole seconds
    (rounded down).
    """
    if seq < 0:
        raise ValueError(f"seq must be >= 0, got {seq}")
    if len(epoch) != EPOCH_LENGTH:
        raise ValueError(f"epoch must be {EPOCH_LENGTH} bytes, got {len(epoch)}")
    if max(len(readings), len(windows) if windows is not None else 0) > MAX_ROWS:
        raise ValueError(f"a batch holds at most {MAX_ROWS} readings and {MAX_ROWS} windows")
    body: dict[int, Any] = {VERSION: FORMAT_VERSION, SEQ: int(seq), CREATED: int(created_ms) // 1000}
    if name_gateway:
        body[GATEWAY] = str(gateway_id)
    if epoch != NO_EPOCH:  # version 4 omits the zero epoch of tools (17 bytes before zstd)
        body[EPOCH] = bytes(epoch)
    rows = series_rows(series)
    if refer_to_catalogue:
        body[CATALOGUE] = catalogue_id_of_cbor(table_cbor(rows))
    else:
        body[SERIES] = [compact_row(row) for row in rows]
    if rollover is not None:
        body[ROLLOVER] = [bytes(rollover.new_public_key), bytes(rollover.proof)]
    plain_variant: Callable[[], dict[int, Any]] | None = None
    if len(readings):
        chosen, plain = encode_readings(readings, series, body[CREATED])
        # version 6: the counts the reader works out from key 0 are left out (`implied`)
        body[READINGS] = drop_counts(chosen, series, body[CREATED])

        def plain_form() -> dict[int, Any]:  # built only when `_smallest_frame` asks for it
            return drop_counts(plain(), series, body[CREATED], like=body[READINGS])

        plain_variant = plain_form
    if windows is not None and len(windows):
        body[WINDOWS] = encode_windows(windows, len(series))
    if gaps:
        body[GAPS] = [
            [int(g.series), int(g.from_ms), int(g.to_ms), int(g.count), str(g.reason)] for g in gaps
        ]
    if events:
        body[EVENTS] = [[int(e.ts_ms), str(e.source), str(e.kind), str(e.detail)] for e in events]
    return _smallest_frame(body, plain_variant)


def _smallest_frame(body: dict[int, Any], plain_readings: Callable[[], dict[int, Any]] | None) -> bytes:
    """The smallest of a few zstd frames of the body: as chosen, and with plain readings columns.

    The columns are chosen one by one, each measured alone; inside the body zstd codes the literals
    of every column left to it with one Huffman table per block, so a mix can come out larger than
    measured (an hourly counter beside jittered timestamps: 2,064 bytes, plain varints 2,038). The
    plain variant at level 3 is the issue-17 baseline itself, so a batch never exceeds it. Bodies with
    columns left to zstd are compressed at DEEP_LEVEL as well (`_levels`). The plain variant is
    skipped when every value-step column is Huffman- or grid-coded, which zstd leaves as measured,
    and the frame is not small (the NEON batches). Small
    bodies, mostly fixed cost, are also tried at several levels (zstd's parse is not monotonic in the
    level on a few hundred bytes: a 950-byte body took 247 bytes at level 9, 253 at 12).
    """
    bodies = [cbor2.dumps(body)]
    # zstd is deterministic: a body's frame at a level is made once, though several rules ask for it
    # (a small body at 12, its plain variant at 3, both at 19: a third of the calls of those batches)
    made: dict[tuple[int, int], bytes] = {}

    def frame(which: int, level: int) -> bytes:
        if (which, level) not in made:
            made[which, level] = zstd_contexts.compress(bodies[which], level)
        return made[which, level]

    left = _left_to_zstd(body.get(READINGS))
    deep = left >= DEEP_FROM and len(bodies[0]) <= DEEP_UP_TO
    frames = [frame(0, level) for level in _levels(deep, ZSTD_LEVEL)]
    if plain_readings is not None and (left or min(map(len, frames)) <= SMALL_BODY):
        bodies.append(cbor2.dumps({**body, READINGS: plain_readings()}))
        frames += [frame(1, level) for level in _levels(deep, 3)]
    if min(len(f) for f in frames) <= SMALL_BODY:
        frames += [frame(which, small) for which in range(len(bodies)) for small in SMALL_BODY_LEVELS]
    # version 5: a body may travel without a frame (9 bytes: magic, header, block header), which
    # small bodies (heartbeats, one-series batches) do not earn back; ties go to the raw body
    return min([*bodies, *frames], key=len)


def _levels(deep: bool, level: int) -> tuple[int, ...]:
    """The levels a body is compressed at: its own and, when columns are left to zstd, DEEP_LEVEL.

    Level 19 is not always the smaller: hourly air temperature with sparse timestamps took 3,178
    bytes at level 12 and 3,226 at 19, its plain body 3,288 at 3 and 3,157 at 19.
    """
    return (level, DEEP_LEVEL) if deep else (level,)


def _left_to_zstd(readings: object) -> int:
    """Bytes of the readings' value-step columns left to zstd: varints, planes, sparse (timestamps are
    left out: regular ones are runs of zeros, which every level compresses alike)."""
    if not isinstance(readings, dict):
        return 0
    columns = readings.get(3, [])
    columns = [columns] if isinstance(columns, bytes) else columns  # version 6: one group's column
    return sum(len(c) for c in columns if c[:1] in (b"\x00", b"\x02", b"\x03"))


#: versions whose readings maps `gateway.wire.group` decodes a group at a time (a later version's
#: readings are decoded with its body, by this module's reader for it)
GROUP_DECODED_VERSIONS = frozenset({1, 2, 3, 4, 5, 6})


class DecodedBody:
    """The fields of a body, checked against the format; with `readings=False` the readings map of
    a version in GROUP_DECODED_VERSIONS is left undecoded in `readings_item` and `readings_deferred`
    is set (`gateway.wire.group` decodes a whole group's at once)."""

    def __init__(
        self, fields: dict[Any, Any], version: int, catalogues: CatalogueLookup | None, readings: bool = True
    ) -> None:
        self.version = version
        self.epoch = NO_EPOCH
        #: field 10 as decoded; `verify` checks it against the signer's kid
        self.rollover: object = None
        if version >= 2:
            epoch = fields.get(EPOCH, NO_EPOCH if version >= 4 else None)
            self.epoch = _typed(epoch, bytes, "epoch")
            if len(self.epoch) != EPOCH_LENGTH:
                raise MalformedBatch(f"epoch must be {EPOCH_LENGTH} bytes, got {len(self.epoch)}")
            self.rollover = fields.get(ROLLOVER)
        #: None: a version-5 body that leaves it to the signing key (`verify.check_signer` fills it in)
        self.gateway_id: str | None = None
        if version < 5 or GATEWAY in fields:
            self.gateway_id = _typed(fields.get(GATEWAY), str, "gateway id")
        self.seq = _typed(fields.get(SEQ), int, "seq")
        if self.seq < 0:
            raise MalformedBatch(f"seq must be >= 0, got {self.seq}")
        self.created_ms = _created_ms(fields, version)
        self.catalogue = self.catalogue_table = b""
        self.series = self._series(fields, catalogues) if version >= 4 else _series_in(fields, version)
        self.readings_item = fields.get(READINGS)
        #: the origin of the first timestamp head (docs/wire-format.md 3.2.1): version 5's creation time
        self.readings_origin_s = self.created_ms // 1000 if version >= 5 else 0
        if version >= 6 and self.readings_item is not None:  # its implied counts written back
            self.readings_item = restore_counts(self.readings_item, self.series, self.readings_origin_s)
        self.readings = _NO_READINGS
        self.readings_deferred = not readings and version in GROUP_DECODED_VERSIONS
        if not self.readings_deferred and self.readings_item is not None:
            self.readings = decode_readings(self.readings_item, self.series, self.readings_origin_s)
        if len(self.readings) > MAX_ROWS:
            raise MalformedBatch(f"more than {MAX_ROWS} readings")
        windows = fields.get(WINDOWS)
        self.windows = _NO_WINDOWS if windows is None else decode_windows(windows, len(self.series), MAX_ROWS)
        self.gaps = tuple(_gap(row, len(self.series)) for row in _list_or_empty(fields, GAPS))
        self.events = tuple(_event(row) for row in _list_or_empty(fields, EVENTS))

    def _series(self, fields: dict[Any, Any], catalogues: CatalogueLookup | None) -> tuple[SeriesInfo, ...]:
        """Versions 4 and 5: the table the body declares (and its catalogue id), or the one it refers to."""
        if SERIES in fields:
            if CATALOGUE in fields:
                raise MalformedBatch("a body carries its series table or a catalogue id, not both")
            series = _series_in(fields, self.version)
            # the id hashes the version-4 form of the table, whichever version declares it
            self.catalogue_table = table_cbor(fields[SERIES] if self.version == 4 else series_rows(series))
            self.catalogue = catalogue_id_of_cbor(self.catalogue_table)
            return series
        self.catalogue = _typed(fields.get(CATALOGUE), bytes, "catalogue id")
        if len(self.catalogue) != CATALOGUE_ID_LENGTH:
            raise MalformedBatch(
                f"catalogue id must be {CATALOGUE_ID_LENGTH} bytes, got {len(self.catalogue)}"
            )
        known = None if catalogues is None else catalogues(self.catalogue)
        if known is None:
            raise UnknownCatalogue(self.catalogue)
        return known


#: shared by every body without readings or windows (zero-length arrays: nothing to mutate); building
#: the 14 empty window columns anew was 10 us of a 100-reading batch's decoding
_NO_READINGS = ReadingColumns.empty()
_NO_WINDOWS = WindowColumns.empty()


def decode_body(
    payload: bytes, catalogues: CatalogueLookup | None = None, *, readings: bool = True
) -> DecodedBody:
    """Decompress and decode a body; only MalformedBatch, UnsupportedVersion or (a version-4 body that
    refers to a catalogue `catalogues` does not know) UnknownCatalogue escape.

    `readings=False` leaves the readings map undecoded (see DecodedBody)."""
    raw = payload[:1] in _CBOR_MAP_HEADS
    fields = _fields(body_cbor(payload))
    version = fields.get(VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version not in READABLE_VERSIONS:
        known = ", ".join(str(v) for v in sorted(READABLE_VERSIONS))
        raise UnsupportedVersion(f"batch format version {version!r}, this reader knows {known}")
    if raw and version < RAW_BODY_FROM:
        raise MalformedBatch(f"a version-{version} body must travel in a zstd frame")
    try:
        return DecodedBody(fields, version, catalogues, readings)
    except WireError:
        raise
    except Exception as exc:  # the safety net of the "only wire errors escape" contract
        raise MalformedBatch(f"inconsistent body ({type(exc).__name__}: {exc})") from None


#: a payload whose first byte is a CBOR map head (major type 5: 0xa0-0xbf) is the body itself; a
#: zstd frame starts with 28 b5 2f fd, so the two never meet (docs/wire-format.md, section 2)
_CBOR_MAP_HEADS = frozenset(bytes([b]) for b in range(0xA0, 0xC0))
#: the first version whose body may travel without a zstd frame
RAW_BODY_FROM = 5


def body_cbor(payload: bytes) -> bytes:
    """The CBOR body a payload holds: itself when it starts with a map head (version 5), else the
    content of its zstd frame; MalformedBatch for a frame that does not decompress."""
    return payload if payload[:1] in _CBOR_MAP_HEADS else _decompress(payload)


def _decompress(payload: bytes) -> bytes:
    try:
        size = zstandard.frame_content_size(payload)
        if size > MAX_BODY_BYTES:
            raise MalformedBatch(f"body declares {size} bytes, more than {MAX_BODY_BYTES}")
        if size >= 0:  # the writer always declares it
            with contextlib.suppress(zstandard.ZstdError):  # then as below, for its exact error
                data = zstd_contexts.decompress(payload)
                if len(data) == size:
                    return data
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload))
        data = reader.read(MAX_BODY_BYTES + 1)
    except zstandard.ZstdError as exc:
        raise MalformedBatch(f"payload is not a zstd frame: {exc}") from None
    if len(data) > MAX_BODY_BYTES:
        raise MalformedBatch(f"body larger than {MAX_BODY_BYTES} bytes")
    return data


def _fields(data: bytes) -> dict[Any, Any]:
    if len(data) > MAX_ITEMS:  # fewer bytes cannot hold more items; a 100-reading body has ~3 kB
        check_items(data)  # before cbor2 builds an object per item (the scan costs ~0.2 us per item)
    stream = io.BytesIO(data)
    try:
        fields = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises several kinds on hostile input
        raise MalformedBatch(f"body is not valid CBOR: {exc}") from None
    if stream.tell() != len(data):
        raise MalformedBatch("body is followed by stray bytes")
    if not isinstance(fields, dict):
        raise MalformedBatch("body must be a CBOR map")
    return fields


#: series tables decoded before, by their repr (which tells 1, 1.0 and True apart, unlike the rows'
#: equality): a gateway sends the same table in every batch, and building 20 checked SeriesInfo was
#: about 15 % of a 100-reading batch's decoding (0.56 of 2.67 s over 2,936 batches, cProfile)
_series_tables: dict[str, tuple[SeriesInfo, ...]] = {}
#: tables kept at most (the cache is emptied when full: 10,000 gateways' tables fit, ~15 MB)
SERIES_TABLES_KEPT = 16384
#: larger tables are decoded each time (their repr would cost more than it saves)
SERIES_TABLE_CACHED_ROWS = 256


def _created_ms(fields: dict[Any, Any], version: int) -> int:
    """The creation time in ms: version 5 carries whole seconds (5 bytes of CBOR instead of 9)."""
    created = _typed(fields.get(CREATED), int, "creation time")
    if version < 5:
        return created
    if not INT64_MIN // 1000 <= created <= INT64_MAX // 1000:
        raise MalformedBatch("creation time in ms does not fit in 64 bits")
    return created * 1000


def _series_in(fields: dict[Any, Any], version: int) -> tuple[SeriesInfo, ...]:
    return _series_table(_typed(fields.get(SERIES), list, "series"), compact=version >= 5)


def catalogue_series(table: bytes) -> tuple[SeriesInfo, ...]:
    """The series of a catalogue kept as its deterministic CBOR (`Batch.catalogue_table`);
    MalformedBatch when the bytes are not a series table."""
    try:
        rows = cbor2.loads(table)
    except Exception as exc:  # cbor2 raises several kinds on hostile input
        raise MalformedBatch(f"catalogue is not valid CBOR: {exc}") from None
    return _series_table(_typed(rows, list, "series"), compact=False)


def _series_table(rows: list[Any], *, compact: bool) -> tuple[SeriesInfo, ...]:
    """The checked series of a table; `compact`: version-5 rows (registry codes, default left out)."""
    if len(rows) > SERIES_TABLE_CACHED_ROWS:
        return _checked_series(rows, compact)
    key = f"{compact:d}{rows!r}"
    table = _series_tables.get(key)
    if table is None:
        table = _checked_series(rows, compact)  # raises before anything is cached
        if len(_series_tables) >= SERIES_TABLES_KEPT:
            _series_tables.clear()
        _series_tables[key] = table
    return table


def _checked_series(rows: list[Any], compact: bool) -> tuple[SeriesInfo, ...]:
    return tuple(_series(expanded_row(row) if compact else row) for row in rows)


def _series(row: object) -> SeriesInfo:
    if not isinstance(row, list) or len(row) != 5:
        raise MalformedBatch("a series table row must be [sensor, quantity, unit, scale, time_res]")
    sensor, quantity, unit, scale, time_res = row
    for text in (sensor, quantity, unit):
        _typed(text, str, "series name")
    time_res = _typed(time_res, int, "time resolution")
    if time_res < 1:
        raise MalformedBatch(f"time resolution must be >= 1 ms, got {time_res}")
    return SeriesInfo(sensor, quantity, unit, resolution_of(scale), time_res)


def _gap(row: object, series_count: int) -> Gap:
    if not isinstance(row, list) or len(row) != 5:
        raise MalformedBatch("a gap must be [series, from_ms, to_ms, count, reason]")
    series, from_ms, to_ms, count = (_typed(x, int, "gap field") for x in row[:4])
    if not 0 <= series < series_count:
        raise MalformedBatch("gap series index outside the series table")
    return Gap(series, from_ms, to_ms, count, _typed(row[4], str, "gap reason"))


def _event(row: object) -> Event:
    if not isinstance(row, list) or len(row) != 4:
        raise MalformedBatch("an event must be [ts_ms, source, kind, detail]")
    ts, source, kind, detail = row
    return Event(
        _typed(ts, int, "event time"),
        _typed(source, str, "event source"),
        _typed(kind, str, "event kind"),
        _typed(detail, str, "event detail"),
    )


def _list_or_empty(fields: dict[Any, Any], key: int) -> list[Any]:
    item = fields.get(key, [])
    return _typed(item, list, f"body field {key}")


def _typed(item: object, kind: type[T], what: str) -> T:
    if not isinstance(item, kind) or isinstance(item, bool):
        raise MalformedBatch(f"{what} must be of type {kind.__name__}, got {type(item).__name__}")
    if isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:
        raise MalformedBatch(f"{what} does not fit in 64 bits")
    return item
