"""CI smoke of benchmarks/dit_speed.py --tiny: the benchmark's code path runs and prints its table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "dit_speed.py"


def test_dit_speed_tiny_prints_its_table(capsys):
    spec = importlib.util.spec_from_file_location("dit_speed", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["dit_speed"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    assert module.main(["--tiny", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "s/chunk" in out and "re-decode" in out
    assert "s=0.5 costs" in out
    lines = [line for line in out.splitlines() if line.startswith("tiny ")]
    assert len(lines) == 3  # s = 1, s = 0.5, re-decode
