"""Which quantities each protocol emits, so `config check` can catch a misspelled name under `resolution`.

A quantity named in a sensor's `resolution` that its protocol never emits is silently ignored at run
time (the series is declared without it), so `pm25` instead of `pm2_5` costs the resolution without a
word. The lists follow the codecs in drivers/; tests/unit/gateway/test_quantities.py feeds the
simulators' frames through the serial codecs and fails when a codec emits a name missing here.
"""

from __future__ import annotations

from drivers.lora.config import CodecChoice
from drivers.modbus.config import ModbusSection
from drivers.serial.config import SerialSection
from gateway.config import BusSensor

_SDS011 = frozenset({"pm2_5", "pm10"})
_PMS5003 = frozenset({"pm1", "pm2_5", "pm10"})
_WXT = frozenset(
    {
        "wind_direction_min", "wind_direction", "wind_direction_max", "wind_speed_min", "wind_speed",
        "wind_speed_max", "air_temperature", "internal_temperature", "relative_humidity",
        "barometric_pressure", "rain_accumulation", "rain_duration", "rain_intensity",
        "rain_peak_intensity", "hail_accumulation", "hail_duration", "hail_intensity",
        "hail_peak_intensity", "heating_temperature", "heating_voltage", "supply_voltage",
        "reference_voltage",
    }
)  # fmt: skip
#: NMEA: MDA/MWV/MTW plus the XDR transducer types; unknown XDR types become xdr_<type>
_NMEA = frozenset(
    {
        "air_temperature", "dew_point", "relative_humidity", "water_temperature", "wind_direction",
        "wind_speed", "barometric_pressure", "angle", "displacement", "frequency", "generic", "current",
        "force", "flow_rate", "switch_state", "rotational_speed", "voltage", "volume",
    }
)  # fmt: skip
_NMEA_OPEN_PREFIX = "xdr_"
_LORA_CODECS = {
    "lht65": frozenset({"battery_voltage", "temperature", "humidity", "external_temperature"}),
    "em300_th": frozenset({"battery", "temperature", "humidity"}),
    "dl_mbx": frozenset({"battery_voltage", "distance", "valid_samples"}),
    "elsys": frozenset(
        {
            "acceleration_x", "acceleration_y", "acceleration_z", "acceleration_motion", "analog1", "analog2",
            "battery_voltage", "co2", "digital_input", "digital_input2", "distance", "external_temperature",
            "external_temperature2", "humidity", "ir_external_temperature", "ir_internal_temperature", "light",
            "motion", "occupancy", "pressure", "pulse1", "pulse1_absolute", "pulse2", "pulse2_absolute",
            "sound_average", "sound_peak", "temperature", "tvoc", "water_leak",
        }
    ),
}  # fmt: skip
#: every LoRa device also reports its link quality
_LORA_SIGNAL = frozenset({"rssi", "snr"})


def emitted(sensor: BusSensor, profile_quantities: frozenset[str] | None = None) -> frozenset[str] | None:
    """The quantities `sensor` can emit, or None when its protocol does not say (a JavaScript codec)."""
    section = sensor.section
    if isinstance(section, SerialSection):
        if section.protocol == "regex":
            return (
                frozenset(f.quantity for f in section.regex.fields.values()) if section.regex else frozenset()
            )
        return {"sds011": _SDS011, "pms5003": _PMS5003, "wxt": _WXT, "nmea": _NMEA}.get(section.protocol)
    if isinstance(section, ModbusSection):
        return profile_quantities
    if isinstance(section, CodecChoice):  # LoRaWAN devices and LoRa modems
        codec = _LORA_CODECS.get(section.codec)
        return None if codec is None else codec | _LORA_SIGNAL
    return None


def unknown(names: set[str] | list[str], known: frozenset[str], protocol: str) -> list[str]:
    """The names in `names` a protocol never emits (NMEA's open xdr_ names always pass)."""
    return sorted(
        n for n in names if n not in known and not (protocol == "nmea" and n.startswith(_NMEA_OPEN_PREFIX))
    )
