"""`python -m sparkvsr COMMAND ...`: batch-friendly entry points over the library.

Each command is a module with an ``add_<name>`` (its arguments) and ``run_<name>`` (its work)
pair listed in ``COMMANDS``; arguments several commands share live in ``arguments``. Errors a user
can fix print as one line on stderr and exit with code 2; nothing here holds logic the library
does not already have.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from sparkvsr.cli import batch, demo, describe, edit, evaluate, restore, worker
from sparkvsr.cli.arguments import EXIT_USAGE, ArgumentParser
from sparkvsr.errors import SparkVSRError

COMMANDS: dict[str, tuple[Callable, Callable[..., int]]] = {
    "probe": (describe.add_probe, describe.run_probe),
    "keyframes": (describe.add_keyframes, describe.run_keyframes),
    "restore": (restore.add_restore, restore.run_restore),
    "demo": (demo.add_demo, demo.run_demo),
    "worker": (worker.add_worker, worker.run_worker),
    "batch": (batch.add_batch, batch.run_batch),
    "eval": (evaluate.add_eval, evaluate.run_eval),
    "edit": (edit.add_edit, edit.run_edit),
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command][1](args) or 0
    except SparkVSRError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sparkvsr",
        description="SparkVSR Studio: keyframe-guided video super-resolution from the command line.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name, (add, _run) in COMMANDS.items():
        add(commands, name)
    return parser
