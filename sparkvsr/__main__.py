"""`python -m sparkvsr ...`: the command line (see sparkvsr/cli.py)."""

from sparkvsr.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
