"""`gateway metrics`: the status as Prometheus text, and a file that says so when the agent is down."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main
from gateway.metrics import render

STATUS = {
    "gateway_id": "hro-0042",
    "produced": {"dust-1": 120, 'odd"name': 3},
    "store": {"committed": 123, "pending": 4, "path": "/var/lib/gateway/buffer.db", "full": False},
    "batcher": {"batches_sealed": 7, "last_seq": None, "windowing": {"closed": 5, "revisions": 1}},
    "uplink": {"state": "connected", "readings_acked": 100},
    "drivers": {"dust-1": {"connected": True, "codec": {"checksum_errors": 2}}},
    "tasks": [{"name": "driver:dust-1", "restarts": 3, "failing": False, "last_error": "x"}],
}


def test_every_number_of_the_status_becomes_a_sample_labelled_by_what_it_belongs_to() -> None:
    lines = render(STATUS).splitlines()
    assert 'gateway_info{gateway_id="hro-0042"} 1' in lines
    assert 'gateway_produced{sensor="dust-1"} 120' in lines
    assert 'gateway_produced{sensor="odd\\"name"} 3' in lines
    assert "gateway_store_committed 123" in lines
    assert "gateway_store_full 0" in lines
    assert "gateway_batcher_windowing_revisions 1" in lines
    assert "gateway_uplink_up 1" in lines
    assert 'gateway_drivers_connected{driver="dust-1"} 1' in lines
    assert 'gateway_drivers_codec_checksum_errors{driver="dust-1"} 2' in lines
    assert 'gateway_task_restarts{task="driver:dust-1"} 3' in lines
    assert not any("path" in line or "last_seq" in line or "last_error" in line for line in lines)


def test_a_file_for_the_textfile_collector_says_the_agent_is_down_when_nobody_answers(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(f'gateway_id = "gw-1"\nkey_file = "k.pem"\nstate_dir = "{tmp_path / "state"}"\n')
    out = tmp_path / "gateway.prom"
    out.write_text("gateway_agent_up 1\n")  # from when it still ran
    result = CliRunner().invoke(main, ["metrics", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0
    assert "gateway_agent_up 0\n" in out.read_text()
    assert 'gateway_metrics_error{reason="agent"} 1' in out.read_text()
    printed = CliRunner().invoke(main, ["metrics", "--config", str(config)])
    assert printed.exit_code == 1


def test_sensor_health_becomes_labelled_samples_without_one_name_per_quantity() -> None:
    status = {
        "gateway_id": "gw",
        "sensors": {
            "quiet-1": {"state": "stale", "stale": True, "readings": 0, "errors": 2, "last": {}},
            "dust-1": {
                "stale": False,
                "readings_per_min": 120.0,
                "last": {"pm10": {"value": 3.0, "ts_ms": 1}},
            },
        },
        "lora": {"node-1": {"rssi": -97.0, "snr": 7.5, "fcnt": 12, "last_seen_ms": 5}},
    }
    lines = render(status).splitlines()
    assert 'gateway_sensors_stale{sensor="quiet-1"} 1' in lines
    assert 'gateway_sensors_errors{sensor="quiet-1"} 2' in lines
    assert 'gateway_sensors_readings_per_min{sensor="dust-1"} 120' in lines
    assert 'gateway_lora_fcnt{sensor="node-1"} 12' in lines
    assert not any("pm10" in line for line in lines)
