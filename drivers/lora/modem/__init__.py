"""Point-to-point LoRa modems on a serial port: sans-I/O line protocols and their driver."""
