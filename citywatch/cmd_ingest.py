"""`citywatch` sub-commands of this part (filled in by the part's owner)."""

from __future__ import annotations


def register(sub) -> None:
    """Add this part's sub-commands to the `citywatch` parser."""
