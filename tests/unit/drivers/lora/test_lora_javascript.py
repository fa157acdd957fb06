"""The JavaScript codec runner: TTN's decodeUplink contract, sloppy mode, limits, isolation."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.lora.codecs import codec_for
from drivers.lora.codecs.javascript import JavascriptCodec
from kernel.errors import ConfigError, ProtocolError

# A formatter in the TTN style (ES5, sloppy mode: an undeclared variable and `with` are legal),
# decoding the Milesight EM300-TH layout so it can be checked against the native codec.
EM300_JS = """
function readInt16LE(b) { var v = (b[1] << 8) | b[0]; return v > 0x7fff ? v - 0x10000 : v; }
function decodeUplink(input) {
  decoded = {};                       // implicit global: only legal in sloppy mode
  var bytes = input.bytes;
  with (Math) { decoded.fport_squared = pow(input.fPort, 2); }
  for (var i = 0; i < bytes.length;) {
    var ch = bytes[i++], type = bytes[i++];
    if (ch === 0x01 && type === 0x75) { decoded.battery = bytes[i]; i += 1; }
    else if (ch === 0x03 && type === 0x67) { decoded.temperature = readInt16LE(bytes.slice(i, i + 2)) / 10; i += 2; }
    else if (ch === 0x04 && type === 0x68) { decoded.humidity = bytes[i] / 2; i += 1; }
    else { return { errors: ["unknown channel " + ch] }; }
  }
  return { data: decoded, warnings: [] };
}
"""
PAYLOAD = bytes([0x01, 0x75, 0x32, 0x03, 0x67, 0xC8, 0x00, 0x04, 0x68, 0x3C])


def test_js_formatter_decodes_like_the_native_codec(tmp_path: Path) -> None:
    script = tmp_path / "em300.js"
    script.write_text(EM300_JS)
    js = codec_for("js", js_file=script)
    got = {m.quantity: m.value for m in js.decode(1, PAYLOAD)}
    native = {m.quantity: m.value for m in codec_for("em300_th").decode(1, PAYLOAD)}
    assert got == {**native, "fport_squared": 1.0}


def test_js_errors_array_becomes_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="unknown channel 9"):
        JavascriptCodec(EM300_JS).decode(1, bytes([9, 9]))


def test_endless_loop_is_stopped_and_the_codec_keeps_working() -> None:
    source = (
        EM300_JS
        + "\nvar calls = 0; var orig = decodeUplink;"
        + ("decodeUplink = function (i) { if (i.fPort === 99) { while (true) {} } return orig(i); };")
    )
    codec = JavascriptCodec(source, timeout_ms=50)
    with pytest.raises(ProtocolError, match="interrupted"):
        codec.decode(99, PAYLOAD)
    assert {m.quantity for m in codec.decode(1, PAYLOAD)} >= {"temperature", "humidity"}


def test_exception_in_script_is_a_protocol_error() -> None:
    codec = JavascriptCodec("function decodeUplink(input) { throw new Error('boom'); }")
    with pytest.raises(ProtocolError, match="boom"):
        codec.decode(1, b"\x00")


def test_memory_hog_is_stopped() -> None:
    codec = JavascriptCodec(
        "function decodeUplink(i) { var a = []; while (true) a.push(new Array(100000)); }",
        timeout_ms=2000,
    )
    with pytest.raises(ProtocolError):
        codec.decode(1, b"\x00")


def test_value_unit_objects_keep_their_unit() -> None:
    codec = JavascriptCodec(
        "function decodeUplink(i) { return {data: {distance: {displayName: 'Distance', unit: 'mm',"
        " value: 1234}, air: {temperature: 3.5}, label: 'x', ok: true}}; }"
    )
    got = {(m.quantity, m.unit): m.value for m in codec.decode(1, b"")}
    assert got == {("distance", "mm"): 1234.0, ("air_temperature", ""): 3.5}


def test_script_without_decode_uplink_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="decodeUplink"):
        JavascriptCodec("function decode(x) { return 1; }")


def test_syntax_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="does not load"):
        JavascriptCodec("function decodeUplink( {")


def test_two_devices_do_not_share_globals() -> None:
    source = "var n = 0; function decodeUplink(i) { n += 1; return {data: {n: n}}; }"
    first, second = JavascriptCodec(source), JavascriptCodec(source)
    first.decode(1, b"")
    first.decode(1, b"")
    assert second.decode(1, b"")[0].value == 1.0


HOSTILE = {
    "deep data (Python's json would recurse too far)": (
        "function decodeUplink(i) { var o = {}, r = o; for (var k = 0; k < 1500; k++) { r.a = {}; r = r.a; }"
        " return {data: o}; }"
    ),
    "errors that are not a list": "function decodeUplink(i) { return {errors: 5}; }",
    "BigInt in data": "function decodeUplink(i) { return {data: {v: 10n}}; }",
    "endless recursion": "function decodeUplink(i) { function f() { return f(); } return f(); }",
    "no return value": "function decodeUplink(i) { }",
    "a number instead of an object": "function decodeUplink(i) { return 42; }",
    "data is an array": "function decodeUplink(i) { return {data: [1, 2]}; }",
}


@pytest.mark.parametrize("source", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_formatters_fail_only_with_protocol_error(source: str) -> None:
    codec = JavascriptCodec(source, timeout_ms=500)
    with pytest.raises(ProtocolError):
        codec.decode(1, b"\x01")


def test_engine_that_cannot_be_rebuilt_is_still_a_protocol_error() -> None:
    codec = JavascriptCodec("function decodeUplink(i) { throw new Error('x'); }")
    with pytest.raises(ProtocolError):
        codec.decode(1, b"")  # a failed call rebuilds the engine before the next one
    # top-level code that throws on the rebuild (it read the clock, a random number, ...)
    codec._source = "throw new Error('cannot load any more');"
    with pytest.raises(ProtocolError, match="cannot load"):
        codec.decode(1, b"")


def test_recv_time_is_a_date_like_the_things_stack_passes_it() -> None:
    codec = JavascriptCodec(
        "function decodeUplink(i) { return {data: {year: i.recvTime.getUTCFullYear(), ms: i.recvTime.getTime()}}; }"
    )
    got = codec.decode_object(1, b"", recv_time_ms=1_764_000_000_000)["data"]
    assert got == {"year": 2025, "ms": 1_764_000_000_000}
    assert {m.quantity for m in codec.decode(1, b"")} == {"year", "ms"}  # the engine's clock without one
