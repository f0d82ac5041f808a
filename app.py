"""SparkVSR Studio entry point: `python app.py` (or `make run`).

Thin by design: parse flags, build the worker, launch the UI. Until the UI lands, it renders
the demo clip through the CLI's restore path so `make run` shows a real result.
"""

from __future__ import annotations

import sys

from sparkvsr.cli import main as cli_main
from sparkvsr.demo import ensure_demo


def main() -> int:
    demo = ensure_demo()
    keyframes = ",".join(str(k) for k in demo.references)
    refs = [f"--ref={k}={p}" for k, p in demo.references.items()]
    out = demo.folder / "demo_restored.mp4"
    return cli_main(["restore", str(demo.lr), "-o", str(out), "--keyframes", keyframes, *refs])


if __name__ == "__main__":
    sys.exit(main())
