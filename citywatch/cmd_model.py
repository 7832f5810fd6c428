"""`citywatch model dataset|train|export|eval`: the detection model's own life cycle.

Thin wrapper over detectors.training, which also runs stand-alone as
`python -m detectors.training` on a training host without the rest of citywatch.
"""

from __future__ import annotations

import sys

from citywatch.console import load_config
from detectors import training
from detectors.offline import MissingExtra


def register(sub) -> None:
    """Add `citywatch model ...` to the `citywatch` parser."""
    p = sub.add_parser("model", help="render a dataset, train, export and evaluate the detector")
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    training.add_arguments(msub)
    for action in msub.choices.values():
        func = action.get_default("func")
        action.set_defaults(func=_guarded(func))


def _guarded(func):
    def run(args) -> int:
        load_config(args)  # ultralytics' settings go to the data directory
        try:
            return func(args)
        except (training.TrainingError, MissingExtra) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return run
