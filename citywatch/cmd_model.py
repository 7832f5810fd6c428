"""`citywatch model dataset|train|finetune|export|eval`: the detection model's own life cycle.

Thin wrapper over detectors.training, which also runs stand-alone as
`python -m detectors.training` on a training host without the rest of citywatch.
"""

from __future__ import annotations

from citywatch.console import load_config
from detectors.training import cli as training_cli


def register(sub) -> None:
    """Add `citywatch model ...` to the `citywatch` parser."""
    p = sub.add_parser("model", help="render a dataset, train, fine-tune, export and evaluate the detector")
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    training_cli.add_arguments(msub)
    for action in msub.choices.values():
        func = action.get_default("func")
        action.set_defaults(func=_as_command(func))


def _as_command(func):
    def run(args) -> int:
        load_config(args)  # ultralytics' settings go to the data directory
        args.func = func
        return training_cli.run(args)
    return run
