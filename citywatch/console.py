"""What every sub-command shares: the configuration it runs with and how it prints."""

from __future__ import annotations

import argparse
import json

from citywatch import config as config_mod
from detectors.offline import use_settings_dir


def load_config(args: argparse.Namespace) -> config_mod.AppConfig:
    """The configuration of this run; ultralytics, if a command loads it, keeps its
    settings in the data directory rather than the user's home."""
    config = config_mod.load(args.config)
    use_settings_dir(config.data_path)
    return config


def emit(data, as_json: bool, text: str) -> None:
    """Print `data` as JSON for machines or `text` for people (stdout; logs go to stderr)."""
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str) if as_json else text)
