"""The reference receiver: verify every batch, deduplicate by (gateway id, seq), store each reading once."""

from gateway.receiver.http import BatchEndpoint
from gateway.receiver.service import Receiver, ReceiverStatistics, Rejection
from gateway.receiver.storage import Outcome, ReceiverDatabase

__all__ = ["BatchEndpoint", "Outcome", "Receiver", "ReceiverDatabase", "ReceiverStatistics", "Rejection"]
