"""What a route's decoder hands its writer, and what the writer says back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ingest.decode import Message
from ingest.errors import Rejected


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message that decoded into a record, waiting to be written."""

    message: Message
    record: Any


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What a route's writer did with a batch: rows stored, exact repeats of stored rows,
    and (index into the batch, why) for records it refused at write time."""

    stored: int
    duplicates: int = 0
    refused: tuple[tuple[int, Rejected], ...] = ()
