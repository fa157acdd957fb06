"""GWMP datagrams: headers, legacy and SX1302 rxpk fields, acknowledgements, garbage."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.lora import gwmp
from kernel.errors import ProtocolError

EUI = 0xAA555A0000000101
HEADER = bytes([2, 0x12, 0x34, 0]) + EUI.to_bytes(8, "big")

# Field names and value styles as in Semtech's PROTOCOL.TXT examples and the SX1302 HAL.
LEGACY = {
    "tmst": 3512348611, "chan": 2, "rfch": 0, "freq": 866.349812, "stat": 1, "modu": "LORA",
    "datr": "SF7BW125", "codr": "4/6", "rssi": -35, "lsnr": 5.1, "size": 4, "data": "dGVzdA==",
}  # fmt: skip
SX1302 = {
    "jver": 1, "tmst": 1234, "time": "2026-11-26T10:00:00.123456Z", "tmms": 1448186418123, "chan": 0,
    "rfch": 1, "freq": 868.1, "mid": 8, "stat": 1, "modu": "LORA", "datr": "SF9BW125", "codr": "4/5",
    "rssis": -40, "lsnr": 9.8, "foff": -250, "rssi": -39, "size": 4, "data": "dGVzdA==",
}  # fmt: skip


def push(body: object) -> bytes:
    return HEADER + json.dumps(body).encode()


def test_legacy_rxpk_fields() -> None:
    message = gwmp.parse_datagram(push({"rxpk": [LEGACY]}))
    assert isinstance(message, gwmp.PushData)
    assert (message.version, message.token, message.gateway_eui) == (2, 0x1234, EUI)
    [rx] = message.rxpk
    assert (rx.data, rx.freq, rx.rssi, rx.lsnr, rx.codr, rx.tmst, rx.chan) == (
        b"test", 866.349812, -35.0, 5.1, "4/6", 3512348611, 2,
    )  # fmt: skip
    assert rx.crc_ok


def test_sx1302_rxpk_fields() -> None:
    message = gwmp.parse_datagram(push({"rxpk": [SX1302]}))
    assert isinstance(message, gwmp.PushData)
    [rx] = message.rxpk
    assert (rx.tmms, rx.rssis, rx.foff, rx.time, rx.rfch) == (1448186418123, -40.0, -250, SX1302["time"], 1)


def test_rsig_only_packet_takes_first_antenna() -> None:
    packet = {k: v for k, v in SX1302.items() if k not in ("rssi", "lsnr", "rssis")}
    packet["rsig"] = [{"ant": 0, "chan": 0, "rssic": -61, "lsnr": 7.5}, {"ant": 1, "rssic": -90}]
    message = gwmp.parse_datagram(push({"rxpk": [packet]}))
    assert isinstance(message, gwmp.PushData)
    assert (message.rxpk[0].rssi, message.rxpk[0].lsnr) == (-61.0, 7.5)


def test_bad_rxpk_entries_are_counted_and_the_good_ones_kept() -> None:
    broken = [{**LEGACY, "data": "***"}, {**LEGACY, "size": 9}, {**LEGACY, "rssi": "loud"}, 5, {"freq": 1}]
    message = gwmp.parse_datagram(push({"rxpk": [LEGACY, *broken], "stat": {"rxnb": 1}}))
    assert isinstance(message, gwmp.PushData)
    assert (len(message.rxpk), message.bad_rxpk, message.stat) == (1, 5, {"rxnb": 1})


def test_crc_failed_packet_is_marked() -> None:
    message = gwmp.parse_datagram(push({"rxpk": [{**LEGACY, "stat": -1}]}))
    assert isinstance(message, gwmp.PushData)
    assert not message.rxpk[0].crc_ok


def test_broken_json_still_parses_so_it_can_be_acknowledged() -> None:
    message = gwmp.parse_datagram(HEADER + b"{nope")
    assert isinstance(message, gwmp.PushData)
    assert message.body_error is not None
    assert gwmp.push_ack(message.version, message.token) == bytes([2, 0x12, 0x34, 1])


def test_pull_data_version_1_and_pull_ack() -> None:
    message = gwmp.parse_datagram(gwmp.build_pull_data(1, 0xABCD, EUI))
    assert message == gwmp.PullData(1, 0xABCD, EUI)
    assert gwmp.pull_ack(1, 0xABCD) == bytes([1, 0xAB, 0xCD, 4])


def test_tx_ack_with_and_without_error() -> None:
    assert gwmp.parse_datagram(gwmp.build_tx_ack(2, 7, EUI)) == gwmp.TxAck(2, 7, EUI, None)
    refused = gwmp.parse_datagram(gwmp.build_tx_ack(2, 7, EUI, "TOO_LATE"))
    assert isinstance(refused, gwmp.TxAck) and not refused.ok


def test_pull_resp_layout() -> None:
    data = gwmp.pull_resp(2, 0x0102, gwmp.TxPacket(b"\x20abc", 868.1, "SF7BW125", tmst=6_000_000))
    assert data[:4] == bytes([2, 1, 2, 3])
    txpk = json.loads(data[4:])["txpk"]
    assert (txpk["tmst"], txpk["size"], base64.b64decode(txpk["data"]), txpk["imme"]) == (
        6_000_000,
        4,
        b"\x20abc",
        False,
    )
    assert gwmp.pull_resp(1, 0x0102, gwmp.TxPacket(b"", 868.1, "SF7BW125"))[1:3] == b"\x00\x00"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x02\x00\x00",
        bytes([3, 0, 0, 0]) + bytes(8),
        bytes([2, 0, 0, 1]),
        bytes([2, 0, 0, 2]) + bytes(3),
    ],
)
def test_unreadable_headers_raise_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        gwmp.parse_datagram(data)


def test_round_trip_through_builder() -> None:
    packet = gwmp.RxPacket(
        b"\x40\x01\x02", 867.5, rssi=-101.0, lsnr=-3.5, tmst=99, chan=4, rfch=1, datr="SF12BW125"
    )
    message = gwmp.parse_datagram(gwmp.build_push_data(2, 1, EUI, [packet]))
    assert isinstance(message, gwmp.PushData)
    assert message.rxpk == (packet,)


@settings(max_examples=300)
@given(body=st.binary(max_size=200), ident=st.sampled_from([0, 2, 5]), version=st.sampled_from([1, 2]))
def test_garbage_bodies_raise_only_protocol_error(body: bytes, ident: int, version: int) -> None:
    with contextlib.suppress(ProtocolError):
        gwmp.parse_datagram(bytes([version, 0, 1, ident]) + body)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rxpk=st.lists(
        st.dictionaries(
            st.sampled_from([*LEGACY, "rsig"]),
            st.one_of(
                st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
            ),
        ),
        max_size=4,
    )
)
def test_mistyped_rxpk_fields_never_crash(rxpk: list[dict[str, object]]) -> None:
    message = gwmp.parse_datagram(push({"rxpk": rxpk}))
    assert isinstance(message, gwmp.PushData)
    assert len(message.rxpk) + message.bad_rxpk == len(rxpk)


# The three example packets of Semtech's PROTOCOL.TXT section 4 (Lora-net/packet_forwarder, also
# in Lora-net/sx1302_hal packet_forwarder/PROTOCOL.md), verbatim. The spec says "padded"; its own
# LoRa examples are not, and the first one holds a '-', which is not base64 at all.
PROTOCOL_TXT_RXPK = """{"rxpk":[
 {"time":"2013-03-31T16:21:17.528002Z","tmst":3512348611,"chan":2,"rfch":0,"freq":866.349812,"stat":1,
  "modu":"LORA","datr":"SF7BW125","codr":"4/6","rssi":-35,"lsnr":5.1,"size":32,
  "data":"-DS4CGaDCdG+48eJNM3Vai-zDpsR71Pn9CPA9uCON84"},
 {"time":"2013-03-31T16:21:17.530974Z","tmst":3512348514,"chan":9,"rfch":1,"freq":869.1,"stat":1,
  "modu":"FSK","datr":50000,"rssi":-75,"size":16,"data":"VEVTVF9QQUNLRVRfMTIzNA=="},
 {"time":"2013-03-31T16:21:17.532038Z","tmst":3316387610,"chan":0,"rfch":0,"freq":863.00981,"stat":1,
  "modu":"LORA","datr":"SF10BW125","codr":"4/7","rssi":-38,"lsnr":5.5,"size":32,
  "data":"ysgRl452xNLep9S1NTIg2lomKDxUgn3DJ7DE+b00Ass"}
]}"""


def test_protocol_txt_example_packets() -> None:
    message = gwmp.parse_datagram(HEADER + PROTOCOL_TXT_RXPK.encode())
    assert isinstance(message, gwmp.PushData)
    assert message.bad_rxpk == 1
    fsk, lora = message.rxpk
    assert fsk == gwmp.RxPacket(
        data=b"TEST_PACKET_1234", freq=869.1, rssi=-75.0, lsnr=None, stat=1, modu="FSK", datr=50000,
        codr=None, tmst=3512348514, time="2013-03-31T16:21:17.530974Z", chan=9, rfch=1,
    )  # fmt: skip
    assert lora.data == base64.b64decode("ysgRl452xNLep9S1NTIg2lomKDxUgn3DJ7DE+b00Ass=")
    assert (len(lora.data), lora.freq, lora.datr, lora.codr, lora.rssi, lora.lsnr, lora.tmst, lora.chan) == (
        32, 863.00981, "SF10BW125", "4/7", -38.0, 5.5, 3316387610, 0,
    )  # fmt: skip


def test_every_legacy_field_is_read() -> None:
    message = gwmp.parse_datagram(push({"rxpk": [{**LEGACY, "time": "2013-03-31T16:21:17.528002Z"}]}))
    assert isinstance(message, gwmp.PushData)
    assert message.rxpk == (
        gwmp.RxPacket(
            data=b"test", freq=866.349812, rssi=-35.0, lsnr=5.1, stat=1, modu="LORA", datr="SF7BW125",
            codr="4/6", tmst=3512348611, time="2013-03-31T16:21:17.528002Z", chan=2, rfch=0,
        ),
    )  # fmt: skip


@pytest.mark.parametrize(
    "field", ["tmst", "tmms", "chan", "rfch", "stat", "size", "freq", "rssi", "lsnr", "foff"]
)
@pytest.mark.parametrize("value", ["1e400", "-1e400", "NaN", "Infinity", "true", '"5"', "1" + "0" * 400])
def test_non_finite_or_mistyped_numbers_are_a_bad_rxpk(field: str, value: str) -> None:
    # Python's json reads NaN, Infinity and 1e400 (inf): none of them may reach a reading
    good = json.dumps({**SX1302, field: 0})
    body = good.replace(f'"{field}": 0', f'"{field}": {value}')
    message = gwmp.parse_datagram(HEADER + b'{"rxpk": [' + body.encode() + b"]}")
    assert isinstance(message, gwmp.PushData)
    assert (message.rxpk, message.bad_rxpk) == ((), 1)


def test_tx_ack_error_and_sx1302_warning() -> None:
    # examples of Lora-net/sx1302_hal packet_forwarder/PROTOCOL.md section 6 (v1.5: TX_POWER is a warning)
    refused = gwmp.parse_datagram(
        HEADER[:3] + b"\x05" + HEADER[4:] + b'{"txpk_ack":{"error":"COLLISION_PACKET"}}'
    )
    limited = gwmp.parse_datagram(
        HEADER[:3] + b"\x05" + HEADER[4:] + b'{"txpk_ack":{"warn":"TX_POWER","value":20}}'
    )
    legacy_ok = gwmp.parse_datagram(HEADER[:3] + b"\x05" + HEADER[4:] + b'{"txpk_ack":{"error":"NONE"}}')
    assert (
        isinstance(refused, gwmp.TxAck)
        and isinstance(limited, gwmp.TxAck)
        and isinstance(legacy_ok, gwmp.TxAck)
    )
    assert (refused.ok, refused.error) == (False, "COLLISION_PACKET")
    assert (limited.ok, limited.warning) == (True, "TX_POWER=20")
    assert legacy_ok.ok and legacy_ok.warning is None


def test_stat_readings_skip_non_numbers_and_non_finite_values() -> None:
    from drivers.lora.readings import stat_readings

    stat = {"rxnb": 3, "rxok": float("nan"), "ackr": float("inf"), "temp": 41.5, "dwnb": True, "txnb": "2"}
    got = {r.quantity: r.value for r in stat_readings(EUI, 0, stat)}
    assert got == {"forwarder_rxnb": 3.0, "forwarder_temp": 41.5}


def test_server_counts_tx_acks_sent_refused_and_limited() -> None:
    from drivers.lora.forwarder import PacketForwarderServer

    class NoSink:
        def reading(self, reading: object) -> None: ...

        def event(self, event: object) -> None: ...

    server = PacketForwarderServer("127.0.0.1", 0, [])
    ack = HEADER[:3] + b"\x05" + HEADER[4:]
    for body in (b"", b'{"txpk_ack":{"error":"TOO_LATE"}}', b'{"txpk_ack":{"warn":"TX_POWER","value":20}}'):
        server.datagram(ack + body, ("127.0.0.1", 1700), NoSink())
    stats = server.statistics()
    assert (stats.tx_ack_ok, stats.tx_ack_failed, stats.tx_ack_warnings, stats.malformed_datagrams) == (
        2,
        1,
        1,
        0,
    )


@pytest.mark.parametrize("depth", [9, 1_000, 30_000])
def test_nesting_deeper_than_the_bound_is_a_malformed_body_never_a_recursion_error(depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    push = gwmp.parse_datagram(HEADER + b'{"rxpk":' + nested + b"}")
    assert isinstance(push, gwmp.PushData) and push.body_error is not None and "nested" in push.body_error
    ack = gwmp.parse_datagram(HEADER[:3] + b"\x05" + HEADER[4:] + b'{"txpk_ack":' + nested + b"}")
    assert isinstance(ack, gwmp.TxAck) and ack.error == "MALFORMED"
    with pytest.raises(ProtocolError):
        gwmp.parse_downstream(bytes([2, 0, 0, gwmp.Identifier.PULL_RESP]) + nested)


def test_brackets_inside_strings_do_not_count_and_an_oversized_datagram_is_refused() -> None:
    body = b'{"rxpk":[],"stat":{"desc":"[[[[[[[[[[[[{{{{{{{{\\"]]]"}}'
    push = gwmp.parse_datagram(HEADER + body)
    assert isinstance(push, gwmp.PushData) and push.body_error is None and push.stat is not None
    with pytest.raises(ProtocolError, match="too long"):
        gwmp.parse_datagram(HEADER + b" " * gwmp.MAX_DATAGRAM)
