"""`gateway wire encode|decode|coder`: signed batches from CSV readings, back to JSON, and the coder library."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np

from gateway.signing_key import load_private_key, load_public_key
from gateway.wire import (
    Batch,
    KnownCatalogues,
    ReadingColumns,
    SeriesInfo,
    ctxmix,
    encode_batch,
    kid_for,
    sign,
    verify_with_key,
)
from kernel.errors import ConfigError, WireError
from kernel.wallclock import now_ms

REQUIRED_COLUMNS = ("ts_ms", "sensor", "quantity", "value", "unit", "resolution")

N = TypeVar("N", int, float)


@click.group(name="wire")
def group() -> None:
    """Encode and decode signed batches (docs/wire-format.md)."""


@group.command("encode")
@click.option("--readings", "readings_path", required=True, type=click.Path(path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path))
@click.option("--gateway-id", required=True)
@click.option("--seq", required=True, type=click.IntRange(min=0))
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path))
@click.option("--created-ms", type=int, default=None, help="creation time (default: now; travels in seconds)")
@click.option(
    "--name-gateway",
    is_flag=True,
    help="write the gateway id into the body (version 5 leaves it to the key; 'decode' then shows it)",
)
def encode_command(
    readings_path: Path,
    key_path: Path,
    gateway_id: str,
    seq: int,
    out_path: Path,
    created_ms: int | None,
    name_gateway: bool,
) -> None:
    """Sign the readings of a CSV file (ts_ms,sensor,quantity,value,unit,resolution[,time_resolution_ms])."""
    try:
        key = load_private_key(key_path)
        series, columns = read_readings_csv(readings_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    body = encode_batch(
        gateway_id=gateway_id,
        seq=seq,
        created_ms=now_ms() if created_ms is None else created_ms,
        series=series,
        readings=columns,
        name_gateway=name_gateway,
    )
    blob = sign(body, key, kid_for(key.public_key()))
    try:
        out_path.write_bytes(blob)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out_path}: {exc.strerror or exc}") from None
    per_reading = len(blob) / len(columns) if len(columns) else float("nan")
    click.echo(
        f"{out_path}: {len(columns)} readings of {len(series)} series in {len(blob)} bytes"
        f" ({per_reading:.3f} bytes/reading), seq {seq}, kid {kid_for(key.public_key()).hex()}",
        err=True,
    )


@group.command("decode")
@click.argument("batch_path", type=click.Path(path_type=Path))
@click.option("--pubkey", "pubkey_path", required=True, type=click.Path(path_type=Path))
@click.option(
    "--catalogue",
    "catalogue_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="a batch of the same gateway that declares the series catalogue BATCH names (repeatable)",
)
@click.option(
    "--gateway-id",
    default=None,
    help="the gateway the key belongs to: checked against a batch that names one, given to one that does not",
)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def decode_command(
    batch_path: Path,
    pubkey_path: Path,
    catalogue_paths: tuple[Path, ...],
    gateway_id: str | None,
    as_json: bool,
) -> None:
    """Verify a signed batch with a gateway's public key and print its content.

    A version-5 batch leaves its gateway id to the key: without --gateway-id (and unless it was
    encoded with --name-gateway) the gateway shows as unknown (null in JSON)."""
    known = KnownCatalogues()
    try:
        public_key = load_public_key(pubkey_path)
        blob = batch_path.read_bytes()
        for path in catalogue_paths:
            known.learn(verify_with_key(path.read_bytes(), public_key, gateway_id=gateway_id))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot read {exc.filename or batch_path}: {exc.strerror or exc}"
        ) from None
    except WireError as exc:
        raise click.ClickException(f"--catalogue: {type(exc).__name__}: {exc}") from None
    try:
        batch = verify_with_key(blob, public_key, known.lookup, gateway_id)
    except WireError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    if as_json:
        click.echo(json.dumps(batch_json(batch), allow_nan=False))
    else:
        _echo_human(batch)


@group.command("coder")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def coder_command(as_json: bool) -> None:
    """Load the compiled coder library and round-trip a column: exit 1 when this install's is broken."""
    try:
        line = ctxmix.self_check()
    except ctxmix.CoderUnavailable as exc:
        if as_json:
            click.echo(json.dumps({"library": str(ctxmix.LIBRARY), "loaded": False, "error": str(exc)}))
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(
            json.dumps({"library": str(ctxmix.LIBRARY), "loaded": True, "abi": ctxmix.ABI, "detail": line})
        )
    else:
        click.echo(line)


def read_readings_csv(path: Path) -> tuple[list[SeriesInfo], ReadingColumns]:
    """The series table and readings of a CSV file; ConfigError naming the line of any problem."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return _parse_rows(csv.DictReader(handle), path)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable CSV file: {exc}") from None


def _parse_rows(rows: csv.DictReader[str], path: Path) -> tuple[list[SeriesInfo], ReadingColumns]:
    missing = [c for c in REQUIRED_COLUMNS if c not in (rows.fieldnames or ())]
    if missing:
        raise ConfigError(f"{path}: header lacks column(s) {', '.join(missing)}")
    index: dict[tuple[str, str, str], int] = {}
    table: list[SeriesInfo] = []
    sid: list[int] = []
    ts: list[int] = []
    values: list[float] = []
    for row in rows:
        line = rows.line_num
        if not (row.get("value") or "").strip():
            continue  # an empty value is a missing reading
        info = _series_of(row, f"{path}:{line}")
        key = (info.sensor, info.quantity, info.unit)
        if key not in index:
            index[key] = len(table)
            table.append(info)
        elif table[index[key]] != info:
            raise ConfigError(f"{path}:{line}: resolution of {key} differs from an earlier row")
        sid.append(index[key])
        ts.append(_number(row["ts_ms"], int, f"{path}:{line}: ts_ms"))
        values.append(_number(row["value"], float, f"{path}:{line}: value"))
    columns = ReadingColumns(
        series=np.array(sid, np.int32),
        ts_ms=np.array(ts, np.int64),
        value=np.array(values, np.float64),
        quality=np.zeros(len(sid), np.uint16),
    )
    return table, columns


def _series_of(row: dict[str, str], where: str) -> SeriesInfo:
    resolution_text = (row.get("resolution") or "").strip()
    time_text = (row.get("time_resolution_ms") or "").strip()
    resolution = _number(resolution_text, float, f"{where}: resolution") if resolution_text else None
    time_resolution = _number(time_text, int, f"{where}: time_resolution_ms") if time_text else 1
    try:
        return SeriesInfo(
            row["sensor"].strip(),
            row["quantity"].strip(),
            (row.get("unit") or "").strip(),
            resolution,
            time_resolution,
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _number(text: str, kind: type[N], what: str) -> N:
    try:
        return kind(text.strip())
    except (ValueError, AttributeError):
        raise ConfigError(f"{what} {text!r} is not a valid {kind.__name__}") from None


def batch_json(batch: Batch) -> dict[str, Any]:
    """The JSON object `gateway wire decode --json` prints (non-finite floats as strings)."""
    series = batch.series
    return {
        "gateway_id": batch.gateway_id or None,  # None: a version-5 batch verified with a bare key
        "seq": batch.seq,
        "readings": [
            {
                "ts_ms": r.ts_ms,
                "sensor": r.sensor,
                "quantity": r.quantity,
                "value": _json_float(r.value),
                "unit": r.unit,
            }
            for r in batch.iter_readings()
        ],
        "windows": list(_windows_json(batch)),
        "gaps": [
            {
                **_series_json(series[g.series]),
                "from_ms": g.from_ms,
                "to_ms": g.to_ms,
                "count": g.count,
                "reason": g.reason,
            }
            for g in batch.gaps
        ],
    }


def _windows_json(batch: Batch) -> Iterable[dict[str, Any]]:
    w = batch.windows
    for i in range(len(w)):
        yield {
            **_series_json(batch.series[int(w.series[i])]),
            "window_start": int(w.window_start[i]),
            "window_ms": int(w.window_ms[i]),
            "rev": int(w.rev[i]),
            "count": int(w.count[i]),
            "nan_count": int(w.nan_count[i]),
            **{
                name: _json_float(float(getattr(w, name)[i]))
                for name in ("min", "max", "mean", "std", "first", "last")
            },
            "first_ts": int(w.first_ts[i]),
            "last_ts": int(w.last_ts[i]),
        }


def _series_json(info: SeriesInfo) -> dict[str, str]:
    return {"sensor": info.sensor, "quantity": info.quantity, "unit": info.unit}


def _json_float(value: float) -> float | str:
    # JSON has no NaN or infinities: spell them as strings, like the protobuf JSON mapping
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _echo_human(batch: Batch) -> None:
    click.echo(
        f"gateway {batch.gateway_id or '(unknown: give --gateway-id)'}  seq {batch.seq}"
        f"  created_ms {batch.created_ms}"
        f"  kid {batch.kid.hex()}  format v{batch.version}"
    )
    click.echo(
        f"{len(batch.readings)} readings, {len(batch.windows)} windows,"
        f" {len(batch.gaps)} gaps, {len(batch.events)} events"
    )
    for r in batch.iter_readings():
        click.echo(f"{r.ts_ms}\t{r.sensor}\t{r.quantity}\t{r.value!r}\t{r.unit}")
