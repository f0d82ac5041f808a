"""`demo`: the synthetic demo clip the studio opens by default."""

from __future__ import annotations

from pathlib import Path

from sparkvsr.cli.arguments import sub


def add_demo(commands, name: str) -> None:
    p = sub(commands, name, "Render the synthetic demo clip (LR, HR and two references).")
    p.add_argument("-o", "--output", type=Path, help="folder (default: assets/demo)")


def run_demo(args) -> int:
    from sparkvsr.demo import DEMO_DIR, make_demo

    files = make_demo(args.output or DEMO_DIR)
    print(f"LR clip    {files.lr}")
    print(f"HR clip    {files.hr}")
    for index, path in files.references.items():
        print(f"reference  frame {index}: {path}")
    return 0
