"""The reference receiver: verify every batch, deduplicate by (gateway id, seq), store each reading once."""

from gateway.receiver.service import Receiver, ReceiverStatistics
from gateway.receiver.storage import Outcome, ReceiverDatabase

__all__ = ["Outcome", "Receiver", "ReceiverDatabase", "ReceiverStatistics"]
