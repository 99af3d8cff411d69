"""``camoffload eval``: run an experiment suite, render its report, publish it.

camoffload eval --list
camoffload eval --suite seed-study [--quick] [--out DIR] [--broker URL]
                [--publish docs/results.md]
camoffload eval --report DIR [--publish docs/results.md]
camoffload eval --suite security [--source-file VIDEO] [--hand-counts CSV] [--quick]

The security suite (``analysis = "security"``) has its own runner and report
(camoffload/eval/security_*.py): each of its cells is a replay of a video against a
reference detector, not the classification runner's shared broker and loads. The
specialize suite (``analysis = "specialize"``) is the same runner after teaching a
camera's own model the first half of each video (camoffload/eval/specialize_cells.py).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import shlex
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from camoffload.lifecycle import run_with_signals
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from camoffload.eval.suite import Suite

__all__ = ["add_eval_command", "run_eval_command"]


def add_eval_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "eval",
        help="run an experiment suite through the real broker and write a report",
        description="Run a declared experiment matrix (strategies x links x server loads "
        "x data) through a real broker, real workers and a real edge; store raw results "
        "and render a report with tables and plots.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--suite", help="a built-in suite name or a suite .toml file")
    what.add_argument("--report", type=Path, metavar="DIR", help="re-render DIR's report")
    what.add_argument("--list", action="store_true", help="list the built-in suites")
    p.add_argument("--quick", action="store_true", help="the suite's [quick] settings")
    p.add_argument("--out", type=Path, help="results folder (default results/SUITE-TIME)")
    p.add_argument("--broker", dest="broker_url", help="use this broker instead of starting one")
    p.add_argument(
        "--publish",
        type=Path,
        metavar="RESULTS_MD",
        help="also write the suite's section of this markdown file (docs/results.md)",
    )
    p.add_argument(
        "--source-file",
        type=Path,
        metavar="VIDEO",
        help="security suite: also run this video file (e.g. the full vtest.avi)",
    )
    p.add_argument(
        "--hand-counts",
        type=Path,
        metavar="CSV",
        help="security suite: people counted by hand (frame,people; frame 0-based) to "
        "check the reference against",
    )
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _require_eval_extra() -> None:
    """Fail before a long run, not after it: the report needs the ``eval`` extra."""
    missing = [name for name in ("matplotlib", "scipy") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"camoffload eval writes its report with {' and '.join(missing)}, which are not "
            "installed: pip install 'camoffload[eval]' (bootstrap.sh --dev installs it)"
        )


def run_eval_command(args: argparse.Namespace, argv: list[str]) -> int:
    from camoffload.eval.suite import builtin_suites, load_suite

    if args.list:
        # Listing needs only the suites, not the plotting stack of the eval extra.
        for name, text in sorted(builtin_suites().items()):
            title = tomllib.loads(text).get("title", "")
            print(f"{name:16} {title}")
        return 0
    _require_eval_extra()
    from camoffload.eval.report import publish, render_report
    from camoffload.eval.security_report import is_security_results

    if args.report is not None:
        if is_security_results(args.report):
            return _security_report(args.report, args.publish)
        folder = args.report
    else:
        suite = load_suite(args.suite, quick=args.quick)
        if suite.analysis in ("security", "specialize"):
            return _run_security(args, argv, suite)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        folder = args.out or Path("results") / f"{suite.name}-{stamp}"
        command = "camoffload " + shlex.join(_without_out(argv))
        print(f"camoffload eval: {suite.name}, {suite.size} cells -> {folder}", flush=True)

        async def main(stop: asyncio.Event) -> int:
            from camoffload.eval.runner import run_suite

            def say(line: str) -> None:
                print(line, file=sys.stderr, flush=True)

            run = await run_suite(
                suite,
                folder,
                broker_url=args.broker_url,
                command=command,
                progress=say,
                stop=stop,
            )
            if not run.meta["complete"]:
                # The cells so far are complete and in the folder: report on them.
                print(f"camoffload eval: stopped; partial results in {folder}", file=sys.stderr)
            return 0

        code = run_with_signals(main)
        if code != 0:
            return code
    report = render_report(folder)
    print(f"report: {report}")
    if args.publish is not None:
        images = publish(folder, args.publish)
        print(f"published: {args.publish} (plots in {images})")
    return 0


def _run_security(args: argparse.Namespace, argv: list[str], suite: Suite) -> int:
    from camoffload.eval.security_measures import read_hand_counts
    from camoffload.eval.security_suite import run_security

    hand = read_hand_counts(args.hand_counts) if args.hand_counts is not None else None
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder: Path = args.out or Path("results") / f"{suite.name}-{stamp}"
    command = "camoffload " + shlex.join(_without_out(argv))
    print(f"camoffload eval: {suite.name} -> {folder}", flush=True)

    async def main(stop: asyncio.Event) -> int:
        def say(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        meta = await run_security(
            suite,
            folder,
            source_file=args.source_file,
            hand_counts=hand,
            command=command,
            progress=say,
            stop=stop,
        )
        if not meta["complete"]:
            print(f"camoffload eval: stopped; partial results in {folder}", file=sys.stderr)
        return 0

    code = run_with_signals(main)
    if code != 0:
        return code
    return _security_report(folder, args.publish)


def _security_report(folder: Path, results_md: Path | None) -> int:
    from camoffload.eval.security_report import (
        format_tables,
        load_security,
        publish_security,
        render_security_report,
    )

    report = render_security_report(folder)
    print("\n".join(format_tables(load_security(folder))))
    print(f"report: {report}")
    if results_md is not None:
        images = publish_security(folder, results_md)
        print(f"published: {results_md} (plots in {images})")
    return 0


def _without_out(argv: list[str]) -> list[str]:
    """The command as typed, less ``--out DIR``: the folder is one run's own."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            kept.append(arg)
    return kept
