"""What the training modules share: paths, the error they raise, and keeping stdout clean."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_PT = MODELS_DIR / "citywatch-default.pt"
DEFAULT_ONNX = MODELS_DIR / "citywatch-default.onnx"
SPLITS = ("train", "val", "test")
DEFAULT_IMGSZ = 640  # the detector workers' inference size (detectors.config)


class TrainingError(RuntimeError):
    """A dataset, training run, export or evaluation that cannot go on (says why)."""


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout meanwhile to stderr: Python's sys.stdout, the
    process's file descriptor 1 (child processes, C code) and ultralytics' logger, which
    holds the stdout it found at import. Results are printed after, on a clean stdout."""
    sys.stdout.flush()
    moved = []
    for name in ("ultralytics", ""):
        for h in logging.getLogger(name).handlers:
            if isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.__stdout__):
                moved.append((h, h.stream))
                h.setStream(sys.stderr)
    saved_fd = None
    try:
        saved_fd = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no real descriptors (an embedded interpreter): Python level only
        saved_fd = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)
        for h, stream in moved:
            h.setStream(stream)
