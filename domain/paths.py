"""Where the project's own files are: configured relative paths resolve against it."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
