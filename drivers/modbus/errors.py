"""Modbus failures, as leaves of the agent's one error tree (kernel.errors)."""

from __future__ import annotations

from kernel.errors import DeviceError

#: exception codes and names of the Modbus Application Protocol V1.1b3, section 7
EXCEPTION_NAMES = {
    1: "ILLEGAL_FUNCTION",
    2: "ILLEGAL_DATA_ADDRESS",
    3: "ILLEGAL_DATA_VALUE",
    4: "SERVER_DEVICE_FAILURE",
    5: "ACKNOWLEDGE",
    6: "SERVER_DEVICE_BUSY",
    8: "MEMORY_PARITY_ERROR",
    10: "GATEWAY_PATH_UNAVAILABLE",
    11: "GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND",
}


def exception_name(code: int) -> str:
    """The protocol's name of an exception code (unknown codes keep their number)."""
    return EXCEPTION_NAMES.get(code, f"EXCEPTION_{code}")


class BusLost(DeviceError):
    """The serial port or TCP connection could not be opened or went away (USB unplugged)."""


class SlaveTimeout(DeviceError):
    """A slave did not answer a request within its timeout."""

    def __init__(self, unit: int, detail: str = "") -> None:
        super().__init__(f"unit {unit} did not answer{': ' + detail if detail else ''}")
        self.unit = unit


class StrayAnswer(SlaveTimeout):
    """An answer that does not fit the request (another function code or size).

    Over RTU answers carry no request id: a slave slower than its timeout answers an earlier
    request while the master waits for the next one. The request counts as unanswered.
    """


class ExceptionResponse(DeviceError):
    """A slave answered with a Modbus exception response (illegal address, busy, ...)."""

    def __init__(self, unit: int, code: int) -> None:
        super().__init__(f"unit {unit} answered {exception_name(code)} ({code})")
        self.unit = unit
        self.code = code

    @property
    def name(self) -> str:
        """The protocol's name of the exception code."""
        return exception_name(self.code)
