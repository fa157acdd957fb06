"""The decoder's series-table cache never lets a body through that decoding afresh would refuse."""

from __future__ import annotations

import cbor2
import numpy as np
import pytest
import zstandard

from gateway.wire import ReadingColumns, SeriesInfo
from gateway.wire.body import SERIES, body_cbor, decode_body, encode_batch
from kernel.errors import MalformedBatch

SERIES_TABLE = [SeriesInfo("dust-1", "pm10", "ug/m3", 0.1, 1000), SeriesInfo("t-1", "temperature", "C", 0.01)]


def body_with_series_row(row: list[object]) -> bytes:
    readings = ReadingColumns(
        series=np.array([0, 1], np.int32), ts_ms=np.array([1000, 1000], np.int64),
        value=np.array([4.5, 20.25]), quality=np.zeros(2, np.int32),
    )  # fmt: skip
    payload = encode_batch(gateway_id="gw-1", seq=1, created_ms=2000, series=SERIES_TABLE, readings=readings)
    fields = cbor2.loads(body_cbor(payload))
    fields[SERIES][0] = row
    return zstandard.ZstdCompressor().compress(cbor2.dumps(fields))


def test_a_table_equal_to_a_cached_one_but_for_a_bool_is_still_refused() -> None:
    good = decode_body(body_with_series_row(["dust-1", "pm10", "ug/m3", 1, 1000]))
    assert good.series[0].time_resolution_ms == 1000
    assert decode_body(body_with_series_row(["dust-1", "pm10", "ug/m3", 1, 1000])).series == good.series
    # [.., 1, 1] == [.., True, True] as Python lists: a cache keyed by the rows would accept it
    decode_body(body_with_series_row(["dust-1", "pm10", "ug/m3", 1, 1]))
    with pytest.raises(MalformedBatch, match="time resolution"):
        decode_body(body_with_series_row(["dust-1", "pm10", "ug/m3", 1, True]))
