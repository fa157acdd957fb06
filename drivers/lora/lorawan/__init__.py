"""LoRaWAN 1.0.x: frames, crypto, frame counters, joins, the network core and its saved state."""
