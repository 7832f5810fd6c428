"""The one way citywatch imports ultralytics: offline and quiet on stdout.

No downloads (weights, fonts, the AMP self-check), no pip auto-installs, no settings sync;
ultralytics' own log goes to stderr, so a command's stdout (`--json`) stays machine-readable.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType


def import_ultralytics() -> ModuleType:
    """Import and configure ultralytics; safe to call any number of times."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    import ultralytics as ul
    from ultralytics.utils import LOGGER, SETTINGS

    if SETTINGS.get("sync"):
        SETTINGS.update(sync=False)
    for handler in LOGGER.handlers:
        if getattr(handler, "stream", None) is sys.stdout:
            handler.setStream(sys.stderr)
    return ul
