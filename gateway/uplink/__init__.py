"""Transports that carry sealed outbox batches to the backend: MQTT QoS 1 or HTTPS (uplink.transport)."""

from __future__ import annotations

import asyncio

from buffer import Store
from gateway.config import UplinkConfig
from gateway.uplink.delivery import Uplink

__all__ = ["Uplink", "open_uplink"]


def open_uplink(store: Store, config: UplinkConfig, *, gateway_id: str, sealed: asyncio.Event) -> Uplink:
    """The configured transport; ConfigError when its files (TLS, token) cannot be used."""
    if config.transport == "https":
        from gateway.uplink.https import HttpsUplink

        return HttpsUplink(store, config, gateway_id=gateway_id, sealed=sealed)
    from gateway.uplink.mqtt import MqttUplink

    return MqttUplink(store, config, gateway_id=gateway_id, sealed=sealed)
