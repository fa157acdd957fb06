"""LoRa decode-path throughput: GWMP parse + LoRaWAN MIC + decryption + payload codec.

Uplinks come from the packet-forwarder simulator (4 ABP devices, one datagram per uplink, as a
quiet forwarder sends them). The same frames go once through the native codecs and once with
every device decoded by a TTN-style JavaScript formatter in QuickJS. Sockets are left out: this
is the CPU cost per uplink, timed with the process's CPU clock (`time.process_time`) so that other
work on a shared machine does not count as ours; the best of REPEATS runs is kept. The same-run
baseline is the bare primitives one uplink cannot do without (JSON and base64 decoding of the
datagram, one AES-CMAC, one AES block), called directly: `ratio_vs_primitives` is the share of
that floor the whole path reaches.
The last stdout line is one JSON object: uplinks_per_s, js_codec_uplinks_per_s,
primitives_per_s, ratio_vs_primitives. Target (issue 8): uplinks_per_s >= 20,000.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from drivers.lora import gwmp
from drivers.lora.codecs import PayloadCodec, codec_for
from drivers.lora.codecs.javascript import JavascriptCodec
from drivers.lora.lorawan.crypto import SessionKey
from drivers.lora.lorawan.devices import DeviceProfile, Session
from drivers.lora.lorawan.network import LorawanNetwork
from hil.sims.packet_forwarder import DEMO_DEVICES, GATEWAY_A, ScenarioOptions, plan_scenario

UPLINKS = 40_000
REPEATS = 3

# A decoder written in the style of the TTN device repository (ES5, sloppy mode), covering the
# four payload formats the simulator sends, so the JS path does comparable work.
JS_FORMATTER = """
function u16(b, i) { return (b[i] << 8) | b[i + 1]; }
function s16(b, i) { var v = u16(b, i); return v > 0x7fff ? v - 0x10000 : v; }
function decodeUplink(input) {
  var b = input.bytes, d = {};
  if (input.fPort === 2) {
    d.battery_voltage = (u16(b, 0) & 0x3fff) / 1000; d.temperature = s16(b, 2) / 100; d.humidity = u16(b, 4) / 10;
  } else if (b[0] === 2 && b.length === 11) {
    d.distance = u16(b, 5); d.valid_samples = u16(b, 7); d.battery_voltage = u16(b, 9) / 1000;
  } else if (b[0] === 1 && b[1] === 0x75) {
    d.battery = b[2]; d.temperature = s16([b[6], b[5]], 0) / 10; d.humidity = b[9] / 2;
  } else {
    for (var i = 0; i < b.length;) {
      var t = b[i++];
      if (t === 1) { d.temperature = s16(b, i) / 10; i += 2; }
      else if (t === 2) { d.humidity = b[i++]; }
      else if (t === 4) { d.light = u16(b, i); i += 2; }
      else if (t === 6) { d.co2 = u16(b, i); i += 2; }
      else { return { errors: ["type " + t] }; }
    }
  }
  return { data: d, warnings: [] };
}
"""


def _datagrams() -> list[bytes]:
    options = ScenarioOptions(uplinks=UPLINKS, crc_failures=0, duplicates=0, replays=0, unknown_devaddr=0)
    plan, _ = plan_scenario(options=options)
    return [gwmp.build_push_data(2, n & 0xFFFF, GATEWAY_A, [rx]) for n, (_, rx) in enumerate(plan)]


def _profiles() -> list[DeviceProfile]:
    return [
        DeviceProfile(
            d.device_id,
            abp=Session(d.devaddr, SessionKey.from_hex(d.nwkskey), SessionKey.from_hex(d.appskey)),
        )
        for d in DEMO_DEVICES
    ]


def _run(datagrams: list[bytes], codec_of: Callable[[str], PayloadCodec]) -> float:
    """Uplinks per second through the whole decode path (a fresh network each run)."""
    codecs = {d.device_id: codec_of(d.codec) for d in DEMO_DEVICES}
    network = LorawanNetwork(_profiles(), dedup_window_s=0.0)
    decoded = 0
    start = time.process_time()
    for n, data in enumerate(datagrams):
        message = gwmp.parse_datagram(data)
        assert isinstance(message, gwmp.PushData)
        for rx in message.rxpk:
            network.receive(message.gateway_eui, rx, float(n), 0)
        for uplink in network.flush(float(n)):
            decoded += len(codecs[uplink.device_id].decode(uplink.fport, uplink.payload)) > 0
    elapsed = time.process_time() - start
    assert decoded == len(datagrams), (decoded, len(datagrams), dict(network.dropped))
    return len(datagrams) / elapsed


def _primitives(datagrams: list[bytes]) -> float:
    """Datagrams per second through the bare primitives (the baseline: no parsing logic)."""
    key = bytes(range(16))
    mac = cmac.CMAC(algorithms.AES(key))
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    b0 = bytes(16)
    start = time.process_time()
    for data in datagrams:
        phy = base64.b64decode(json.loads(data[12:])["rxpk"][0]["data"])
        one = mac.copy()
        one.update(b0 + phy[:-4])
        one.finalize()
        ecb.update(b0)
    return len(datagrams) / (time.process_time() - start)


def main() -> None:
    """Measure both paths REPEATS times and keep the best (the machine is shared)."""
    datagrams = _datagrams()
    native = max(_run(datagrams, codec_for) for _ in range(REPEATS))
    js = max(
        _run(datagrams[: UPLINKS // 4], lambda _name: JavascriptCodec(JS_FORMATTER)) for _ in range(REPEATS)
    )
    floor = max(_primitives(datagrams) for _ in range(REPEATS))
    result = {
        "uplinks_per_s": round(native),
        "js_codec_uplinks_per_s": round(js),
        "primitives_per_s": round(floor),
        "ratio_vs_primitives": round(native / floor, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
