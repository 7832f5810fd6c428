"""The one way citywatch imports ultralytics: offline, quiet, and with its settings in
citywatch's data directory.

No downloads (weights, fonts, the AMP self-check), no pip auto-installs, no settings
sync. ultralytics keeps a settings file (`settings.json`: datasets, weights and runs
folders, telemetry) in a per-user folder and points those folders into whatever git
checkout it is imported from; `use_settings_dir` moves the file into citywatch's data
directory and the folders beside it. ultralytics' first-run banner and per-model
"Loading ..." lines are not printed, and its log goes to stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

from detectors.base import DetectorError


class MissingExtra(DetectorError, ImportError):
    """ultralytics / torch are not installed (they come with the `yolo` extra)."""


def use_settings_dir(data_dir: Path) -> None:
    """Keep ultralytics' settings in `data_dir`/Ultralytics (process-wide and read when
    ultralytics is first imported, so call it early; a YOLO_CONFIG_DIR already set wins)."""
    os.environ.setdefault("YOLO_CONFIG_DIR", str(data_dir))


def _below_warning(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def import_ultralytics() -> ModuleType:
    """Import and configure ultralytics; safe to call any number of times."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    first = "ultralytics" not in sys.modules
    # ultralytics binds its log handler to sys.stdout and may print its settings banner
    # while being imported: bind it to stderr, and let only warnings through meanwhile.
    # (YOLO_VERBOSE=False would do the latter but also turn off training progress bars.)
    logger = logging.getLogger("ultralytics")
    logger.addFilter(_below_warning)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            import ultralytics as ul
    except ImportError as exc:
        raise MissingExtra(f"this needs ultralytics and torch: pip install 'citywatch[yolo]' "
                           f"({exc})") from exc
    finally:
        logger.removeFilter(_below_warning)
    if first:
        from ultralytics.utils import SETTINGS

        home = Path(SETTINGS.file).parent
        wanted = {"sync": False}
        if os.environ.get("YOLO_CONFIG_DIR"):
            wanted |= {"datasets_dir": str(home / "datasets"),
                       "weights_dir": str(home / "weights"), "runs_dir": str(home / "runs")}
        if any(SETTINGS.get(k) != v for k, v in wanted.items()):
            SETTINGS.update(**wanted)
    return ul


def quiet_inference() -> None:
    """ultralytics logs only warnings from now on in this process: a detector service has
    no use for its per-model "Loading ..." and per-image lines."""
    import_ultralytics()
    from ultralytics.utils import LOGGER

    LOGGER.setLevel(logging.WARNING)
