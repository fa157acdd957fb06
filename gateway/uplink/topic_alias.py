"""MQTT 5 topic aliases: the batch topic travels once per connection, then as a two-byte alias.

`gateways/<gateway id>/batches` is 30-40 bytes in every PUBLISH; with an alias the first PUBLISH of a
connection names the topic and alias 1, the later ones an empty topic and alias 1 (MQTT 5.0, section
3.3.2.3.4). Only where the broker's CONNACK allows it (Topic Alias Maximum >= 1; Mosquitto's default
is 10); an MQTT 3.1.1 connection, or a broker that allows none, gets the topic every time. Sans-I/O:
the transport tells it about each CONNACK and asks it what to publish.
"""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

#: the one alias the agent uses: it publishes to one topic
ALIAS = 1


class TopicAlias:
    """What the next PUBLISH names: the topic (and sets the alias) or only the alias."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._allowed = False
        self._set = False
        #: PUBLISHes that went out with the alias alone (the topic's bytes saved each time)
        self.aliased = 0

    def connected(self, topic_alias_maximum: int) -> None:
        """A CONNACK arrived: aliases are per connection, so the next PUBLISH names the topic again."""
        self._allowed = topic_alias_maximum >= ALIAS
        self._set = False

    def next_publish(self) -> tuple[str, Properties | None]:
        """The topic and properties of the next PUBLISH, in the order they are handed to the client."""
        if not self._allowed:
            return self.topic, None
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.TopicAlias = ALIAS
        if not self._set:
            self._set = True
            return self.topic, properties
        self.aliased += 1
        return "", properties
