"""What every sub-command shares: the configuration it runs with and how it prints."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from citywatch import config as config_mod
from detectors.offline import use_settings_dir

# The zone every time in JSON output is written in: the configured one once loaded.
_output_zone: tzinfo | None = None


def load_config(args: argparse.Namespace) -> config_mod.AppConfig:
    """The configuration of this run; times in JSON output are written in its zone, and
    ultralytics, if a command loads it, keeps its settings in the data directory rather
    than the user's home."""
    global _output_zone
    config = config_mod.load(args.config)
    _output_zone = ZoneInfo(config.rules.timezone)
    use_settings_dir(config.data_path)
    return config


def time_arg(text: str) -> str:
    """An argparse `type` for a time option: refuse what is not ISO 8601 before anything runs
    (the zone of a time without an offset is applied later by parse_time)."""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return text


def parse_time(text: str | None, tz: str) -> datetime | None:
    """A time given on the command line (ISO 8601); one without an offset is read in zone `tz`."""
    if not text:
        return None
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=ZoneInfo(tz))


def json_value(value):
    """JSON for what json cannot write itself: a time as RFC 3339 with the offset of the
    configured zone (one convention in all output), anything else as its text."""
    if isinstance(value, datetime):
        if value.tzinfo is None or _output_zone is None:
            return value.isoformat()
        return value.astimezone(_output_zone).isoformat()
    return str(value)


def emit(data, as_json: bool, text: str) -> None:
    """Print `data` as JSON for machines or `text` for people (stdout; logs go to stderr)."""
    print(json.dumps(data, ensure_ascii=False, indent=2, default=json_value) if as_json else text)
