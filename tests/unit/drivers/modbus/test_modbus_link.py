"""The transport's boundary: answers checked against their request, cancellation never lost.

A fake pymodbus client we own stands in for the library, to produce answers that a healthy
simulator never sends (a late answer to another request) and the Python 3.11 `wait_for` race.
"""

from __future__ import annotations

import asyncio

import pytest
from pymodbus.pdu import ExceptionResponse as PduException
from pymodbus.pdu.bit_message import ReadCoilsResponse
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

from drivers.modbus.errors import ExceptionResponse, SlaveTimeout, StrayAnswer
from drivers.modbus.link import ModbusLink, TcpEndpoint
from drivers.modbus.registers import RegisterKind


class FakeClient:
    """Answers every read with `answer`; `swallow` behaves like 3.11's wait_for on a cancel."""

    connected = True

    def __init__(self, answer: object, *, swallow: bool = False) -> None:
        self.answer = answer
        self.swallow = swallow

    async def _answer(self, *_args: object, **_kwargs: object) -> object:
        if not self.swallow:
            return self.answer
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return self.answer  # the answer arrived together with the cancellation
        raise AssertionError("never cancelled")

    read_coils = read_discrete_inputs = read_holding_registers = read_input_registers = _answer

    def close(self) -> None:
        self.connected = False


def link_with(client: FakeClient) -> ModbusLink:
    link = ModbusLink(TcpEndpoint("fake"))
    link._client = client  # type: ignore[assignment]
    return link


async def test_answer_of_the_right_kind_and_size_gives_its_values():
    link = link_with(FakeClient(ReadHoldingRegistersResponse(registers=[7, 8])))
    assert await link.read(RegisterKind.HOLDING, 1, 100, 2, timeout_s=1.0) == [7, 8]
    coils = link_with(
        FakeClient(ReadCoilsResponse(bits=[True, False, True, False, False, False, False, False]))
    )
    assert await coils.read(RegisterKind.COIL, 1, 0, 3, timeout_s=1.0) == [1, 0, 1]


@pytest.mark.parametrize(
    "answer",
    [
        ReadInputRegistersResponse(registers=[7, 8]),  # a late answer to an input register read
        ReadHoldingRegistersResponse(registers=[7, 8, 9]),  # a late answer to a larger read
        PduException(4, 2),  # another request's exception
    ],
)
async def test_answer_to_another_request_counts_as_no_answer(answer):
    link = link_with(FakeClient(answer))
    with pytest.raises(StrayAnswer) as raised:
        await link.read(RegisterKind.HOLDING, 1, 100, 2, timeout_s=1.0)
    assert isinstance(raised.value, SlaveTimeout)  # retried like a timeout by the bus


async def test_exception_answer_to_this_request_is_an_exception_response():
    link = link_with(FakeClient(PduException(3, 6)))
    with pytest.raises(ExceptionResponse) as raised:
        await link.read(RegisterKind.HOLDING, 1, 100, 2, timeout_s=1.0)
    assert raised.value.name == "SERVER_DEVICE_BUSY"


async def test_cancellation_arriving_with_the_answer_still_stops_the_caller():
    link = link_with(FakeClient(ReadHoldingRegistersResponse(registers=[7, 8]), swallow=True))
    task = asyncio.create_task(link.read(RegisterKind.HOLDING, 1, 100, 2, timeout_s=10.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_own_timeout_arriving_with_the_answer_keeps_the_answer():
    link = link_with(FakeClient(ReadHoldingRegistersResponse(registers=[7, 8]), swallow=True))
    assert await link.read(RegisterKind.HOLDING, 1, 100, 2, timeout_s=0.01) == [7, 8]
