"""``camoffload config``: the configuration's JSON Schema, or the settings it resolves to.

::

    camoffload config --schema > camoffload.schema.json
    camoffload config --show [--config FILE] [--set SECTION.KEY=VALUE ...]

The schema is for editors: with ``#:schema ./camoffload.schema.json`` as the first line
of a TOML file, taplo (VS Code's Even Better TOML) completes and checks its keys, types,
choices and ranges. ``--show`` prints what the file, the environment and ``--set``
resolve to, as JSON that the schema describes; the broker password is left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from camoffload.runtime_options import add_config_options

__all__ = ["add_config_command", "run_config_command"]


def add_config_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``config --schema`` and ``config --show`` to the CLI's subcommands."""
    p = sub.add_parser(
        "config",
        help="print the configuration's JSON Schema (--schema) or the resolved settings (--show)",
        description="The configuration file's JSON Schema for editors, or the settings that "
        "a file, the CAMOFFLOAD_* environment and --set resolve to.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--schema", action="store_true", help="print the JSON Schema")
    what.add_argument(
        "--show", action="store_true", help="print the resolved configuration as JSON"
    )
    add_config_options(p)  # read by --show


def run_config_command(args: argparse.Namespace) -> int:
    from pipeline.config import config_schema, load_config

    if args.schema:
        document = config_schema()
    else:
        document = dataclasses.asdict(load_config(args.config, overrides=args.overrides))
        document["broker"].pop("password")  # a secret never reaches the terminal
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    return 0
