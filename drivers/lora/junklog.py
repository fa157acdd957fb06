"""Junk arriving at a socket, logged without flooding: once at WARNING, then DEBUG, then summaries.

Anyone on the network can send the forwarder port garbage as fast as it likes. One WARNING line
per junk datagram would fill journald (a retrying forwarder with a bad body sends several a
second); silence would hide a misconfigured forwarder. So: the first datagram of each kind of junk
is a WARNING that says repeats follow at DEBUG, and while junk keeps arriving a WARNING summary
with the counts since the previous one is logged at most every `interval_s` (structlog's
production habit: WARNING on the first failure of a series, DEBUG for the repeats).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import structlog

log = structlog.get_logger(__name__)

#: a summary at most this often while junk keeps arriving
SUMMARY_INTERVAL_S = 600.0


class JunkLog:
    """Counts junk by kind and logs it quietly; `now` is a monotonic time the caller passes in."""

    def __init__(self, event: str, interval_s: float = SUMMARY_INTERVAL_S) -> None:
        self._event = event
        self._interval_s = interval_s
        #: junk of each kind since the start
        self.counts: Counter[str] = Counter()
        self._since: Counter[str] = Counter()
        self._summary_due: float | None = None

    def note(self, kind: str, now: float, **context: Any) -> None:
        """One piece of junk of `kind` (context: source address, error text)."""
        self.counts[kind] += 1
        self._since[kind] += 1
        if self._summary_due is None:
            self._summary_due = now + self._interval_s
        if self.counts[kind] == 1:
            log.warning(self._event, kind=kind, repeats="logged at DEBUG, summarised", **context)
        else:
            log.debug(self._event, kind=kind, count=self.counts[kind], **context)
        if now >= self._summary_due:
            log.warning(f"{self._event}.summary", interval_s=self._interval_s, **dict(self._since))
            self._since.clear()
            self._summary_due = now + self._interval_s
