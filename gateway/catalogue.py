"""The gateway's series catalogue (wire version 4): one table for all its batches, and when to declare it.

Each batch used to carry a table of just its own series: for 30 street-sensor series about 250 bytes
after zstd, more than the readings of a 15-minute batch (bench/air_bench.py). The agent now keeps ONE
table of every series it sealed since it started, in order of first use (an index never changes
meaning), declares it in full only when a receiver may not hold it, and otherwise names it by its
8-byte id (docs/wire-format.md, section 3.5). Sans-I/O: the epoch and the time are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway import wire
from gateway.config import BatchingConfig
from gateway.window_routing import SeriesTable

#: a catalogue holds at most this many series; beyond it the next table starts over with the series
#: of the batch at hand (a gateway with churning series names must not grow a table without bound)
MAX_SERIES = 1024


@dataclass(frozen=True)
class ResendRule:
    """Every `every_batches`-th batch declares the catalogue again, or the first after `every_ms`:
    that bounds how long a receiver that lost its catalogues holds the gateway's batches."""

    every_batches: int = 96
    every_ms: int = 6 * 3600 * 1000

    @classmethod
    def of(cls, batching: BatchingConfig) -> ResendRule:
        """The rule `[batching]` configures."""
        return cls(batching.catalogue_every_batches, round(batching.catalogue_every_s * 1000))


@dataclass(frozen=True)
class Declaration:
    """What one batch does with the catalogue: declare it (carry the table) or refer to it."""

    epoch: bytes
    catalogue: bytes
    declare: bool


class GatewayCatalogue:
    """The series table batches index, and the resend rule deciding when a batch declares it."""

    def __init__(self, rule: ResendRule | None = None) -> None:
        self.rule = rule if rule is not None else ResendRule()
        self.table = SeriesTable()
        #: the last declaration sealed, the referring batches sealed since and when it was sealed
        self._declared: tuple[bytes, bytes] | None = None
        self._since = 0
        self._declared_ms = 0

    def table_for(self, keys: Iterable[tuple[str, str, str]]) -> SeriesTable:
        """The table with `keys` (sensor, quantity, unit) in it: the same table while it has room, else
        a new one of `keys`. New series are appended by quantity, unit, then sensor: the readings'
        heads are coded as differences in table order, and neighbours of one quantity differ little
        (30 series of bench/air_bench.py profile b: 1.082 -> 1.065 bytes per reading, 1.6 %)."""
        keys = list(dict.fromkeys(keys))
        missing = sorted((key for key in keys if self.table.find(key) is None), key=_by_quantity)
        if len(self.table.keys) + len(missing) > MAX_SERIES:
            self.table, missing = SeriesTable(), sorted(keys, key=_by_quantity)
        for key in missing:
            self.table.add(key)
        return self.table

    def plan(self, series: Iterable[wire.SeriesInfo], epoch: bytes, now_ms: int) -> Declaration:
        """Whether the next batch, whose table declares `series`, must carry it: the first batch since
        start and of each epoch, a changed table, and after `every_batches` or `every_ms` (a clock
        stepped back counts as due)."""
        catalogue = wire.catalogue_of(list(series))
        elapsed = now_ms - self._declared_ms
        declare = (
            self._declared != (epoch, catalogue)
            or self._since >= self.rule.every_batches - 1
            or not 0 <= elapsed < self.rule.every_ms
        )
        return Declaration(epoch, catalogue, declare)

    def sealed(self, declaration: Declaration, now_ms: int) -> None:
        """The batch planned with `declaration` is in the outbox (only then does it count)."""
        if declaration.declare:
            self._declared = (declaration.epoch, declaration.catalogue)
            self._since, self._declared_ms = 0, now_ms
        else:
            self._since += 1


def _by_quantity(key: tuple[str, str, str]) -> tuple[str, str, str]:
    sensor, quantity, unit = key
    return quantity, unit, sensor
