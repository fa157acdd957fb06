"""The bus families this agent is built with (drivers/family.py): the one list config and drivers come from."""

from __future__ import annotations

from typing import Any

import drivers.lora
import drivers.modbus
import drivers.serial
from drivers.family import BusFamily

#: every configurable kind of sensor, in the order the config's JSON schema lists them
BUS_FAMILIES: tuple[BusFamily[Any], ...] = (
    *drivers.serial.FAMILIES,
    *drivers.modbus.FAMILIES,
    *drivers.lora.FAMILIES,
)
FAMILY_BY_TAG: dict[str, BusFamily[Any]] = {family.tag: family for family in BUS_FAMILIES}
