"""The protocol quantity lists `config check` uses are what the codecs really emit (fed by the simulators)."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.serial import codec_for
from drivers.serial.codec import Sample
from drivers.serial.config import SerialSection
from gateway.config import SENSOR_MODELS
from gateway.quantities import emitted
from hil.sims.nmea_station import KINDS, WeatherStation
from hil.sims.pms5003 import Pms5003Device
from hil.sims.sds011 import Sds011Device
from hil.sims.wxt import WxtDevice

DEVICES: dict[str, Any] = {
    "sds011": lambda: Sds011Device(1),
    "pms5003": lambda: Pms5003Device(1),
    "wxt": lambda: WxtDevice(1, address="0", crc=False, polled=False, invalid_every=0),
    "nmea": lambda: WeatherStation(KINDS, 1),
}


@pytest.mark.parametrize("protocol", sorted(DEVICES))
def test_every_quantity_a_codec_emits_is_known_to_config_check(protocol: str) -> None:
    section = SerialSection(port="/dev/null", protocol=protocol)  # type: ignore[arg-type]
    sensor = SENSOR_MODELS["serial"](id="s", driver="serial", serial=section)
    known = emitted(sensor)
    assert known is not None
    device, codec = DEVICES[protocol](), codec_for(section)
    seen: set[str] = set()
    for _ in range(200):
        frame = device.frame()
        if frame is None:
            continue
        codec.feed(frame.data)
        for event in codec.events():
            if isinstance(event, Sample):
                seen |= {m.quantity for m in event.measurements}
    assert seen, "the simulator produced readings"
    assert seen <= known, seen - known
