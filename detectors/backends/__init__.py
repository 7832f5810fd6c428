"""Detector backends: one module each, found by looking in this folder.

Each module defines its settings model (a `detectors.base.BackendConfig` with
`type: Literal[key]`) and its detector, and calls `detectors.base.register`. Importing
this package imports every module here, so adding a backend is adding a module; a
module imports its heavy libraries (torch, onnxruntime) only when a detector is built.
"""

from __future__ import annotations

import importlib
import pkgutil

from detectors.base import BACKENDS, Backend


def load_all() -> dict[str, Backend]:
    """Import every backend module of this package; return the registry."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return BACKENDS


load_all()
