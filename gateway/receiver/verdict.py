"""What became of one arrival, and the one table mapping it to an HTTP status (docs/wire-format.md 6.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.receiver.store import Outcome, QuarantineReason

#: the gateway ids a receiver accepts in a topic or URL: the alphabet `gateway_id` has in the agent's
#: config (1 to 64 of A-Z a-z 0-9 . _ -), so `gw-b%2Fx` or `gw b` can never name a gateway
GATEWAY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def valid_gateway_id(text: str) -> bool:
    """Whether `text` is a gateway id of the documented alphabet."""
    return GATEWAY_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class Verdict:
    """The outcome of a stored/duplicate/replayed batch, or why it was quarantined or rejected."""

    result: Outcome | QuarantineReason
    detail: str = ""

    @property
    def settled(self) -> bool:
        """Durably taken care of: stored, duplicate, or kept in the retryable quarantine."""
        if isinstance(self.result, Outcome):
            return self.result is not Outcome.REPLAY
        return self.result.retryable

    @property
    def name(self) -> str:
        """The outcome's or reason's name as it appears in answers, logs and statistics."""
        return str(self.result.value)


#: the HTTP status of each verdict: 2xx the gateway deletes the batch, 409/422 it gives it up,
#: 403 it keeps it and retries. A quarantined batch is durably held here (202): re-verified when its
#: key is enrolled, so the gateway need not resend it.
HTTP_STATUS: dict[Outcome | QuarantineReason, int] = {
    Outcome.STORED: 200,
    Outcome.DUPLICATE: 200,
    Outcome.REPLAY: 409,
    QuarantineReason.UNKNOWN_KEY: 202,
    QuarantineReason.NOT_ENROLLED: 202,
    QuarantineReason.REVOKED: 202,
    QuarantineReason.UNSUPPORTED_VERSION: 202,
    QuarantineReason.CATALOGUE_UNKNOWN: 202,
    QuarantineReason.BAD_SIGNATURE: 422,
    QuarantineReason.MALFORMED: 422,
    QuarantineReason.TOPIC_MISMATCH: 403,
    QuarantineReason.REPLAY: 409,
}
