"""`gateway modbus read|scan` against the slave simulator running as its own process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from gateway.cli.modbus import group
from hil.children import ChildProcesses


@pytest.fixture(scope="module")
def tcp_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    simulators = ChildProcesses(tmp_path_factory.mktemp("modbus-cli"))
    try:
        where = simulators.start_ready(
            "slave", "-m", "hil.sims.modbus_slave", "--tcp", "127.0.0.1:0", "--slave", "1:sdm630",
            "--slave", "2:radar_level", "--slave", "3:analog_4_20ma:exception",
        )  # fmt: skip
        yield str(where["tcp"])
    finally:
        simulators.stop_all(graceful=True)


def run(*args: str):
    return CliRunner().invoke(group, list(args))


def test_read_float32_prints_one_json_object_per_value(tcp_bus):
    result = run(
        "read", "--tcp", tcp_bus, "--unit", "1", "--kind", "input", "--address", "0",
        "--type", "float32", "--count", "3", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["address"] for r in rows] == [0, 2, 4]
    assert all(220 < r["value"] < 240 for r in rows)  # phase voltages


def test_read_in_the_wrong_word_order_shows_garbage_not_volts(tcp_bus):
    result = run(
        "read", "--tcp", tcp_bus, "--unit", "1", "--kind", "input", "--address", "0",
        "--type", "float32", "--order", "CDAB", "--json",
    )  # fmt: skip
    assert result.exit_code == 0
    assert not 220 < json.loads(result.output)["value"] < 240


def test_read_hex_address_uint16(tcp_bus):
    result = run("read", "--tcp", tcp_bus, "--unit", "2", "--kind", "holding", "--address", "0x5")
    assert result.exit_code == 0
    assert result.output.split() == ["5", "500"]  # installation height 5 m in cm


def test_exception_response_exits_1_with_its_name(tcp_bus):
    result = run("read", "--tcp", tcp_bus, "--unit", "3", "--kind", "input", "--address", "0")
    assert result.exit_code == 1
    assert "SERVER_DEVICE_BUSY" in result.output


def test_silent_unit_exits_2(tcp_bus):
    result = run(
        "read", "--tcp", tcp_bus, "--unit", "9", "--kind", "input", "--address", "0",
        "--timeout", "0.2",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "did not answer" in result.output


def test_scan_lists_the_units_that_answer(tcp_bus):
    result = run("scan", "--tcp", tcp_bus, "--units", "1-5", "--json")
    assert result.exit_code == 0
    assert [json.loads(line)["unit"] for line in result.stdout.splitlines()] == [1, 2, 3]
    assert "scanned 5/5 units, 3 answered" in result.stderr


def test_scan_over_rtu_on_a_pty(tmp_path, processes):
    link = tmp_path / "ttyRS485"
    processes.start_ready("slave", "-m", "hil.sims.modbus_slave", "--rtu", str(link), "--baud", "9600",
                          "--slave", "4:radar_level")  # fmt: skip
    result = run("scan", "--serial", str(link), "--units", "3-5", "--timeout", "0.2")
    assert result.exit_code == 0, result.output
    assert [line.split()[1] for line in result.stdout.splitlines()] == ["4"]


def test_neither_tcp_nor_serial_is_a_usage_error():
    result = run("read", "--unit", "1", "--kind", "input", "--address", "0")
    assert result.exit_code == 2
    assert "exactly one" in result.output


def test_read_larger_than_one_request_is_a_usage_error_before_the_bus_is_touched():
    # 40 float64 values are 160 registers; one request returns at most 125
    result = run(
        "read", "--tcp", "127.0.0.1:9", "--unit", "1", "--kind", "holding", "--address", "0",
        "--type", "float64", "--count", "40",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "at most 125" in result.output
