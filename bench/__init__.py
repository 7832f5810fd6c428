"""Benchmarks: each module runs one comparison and prints its result as JSON."""

from __future__ import annotations

import json
from pathlib import Path


def publish(result: dict, path: str | Path | None) -> int:
    """Print `result` as JSON on stdout and, given `path`, write it there too; returns the
    exit status of a benchmark that got this far (0)."""
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        Path(path).write_text(text + "\n", encoding="utf-8")
    return 0
