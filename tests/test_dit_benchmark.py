"""CI smoke of benchmarks/dit_speed.py --tiny: the benchmark's code path runs and prints its table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "dit_speed.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("dit_speed", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["dit_speed"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_dit_speed_tiny_prints_its_table(capsys):
    module = _benchmark()
    assert module.main(["--tiny", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "s/chunk" in out and "re-decode" in out
    assert "s=0.5 costs" in out
    lines = [line for line in out.splitlines() if line.startswith("tiny ")]
    assert len(lines) == 3  # s = 1, s = 0.5, re-decode


def test_dit_speed_tiny_previews_print_one_row_per_view(capsys):
    assert _benchmark().main(["--previews", "--tiny", "--device", "cpu"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny ")]
    assert [line[10:31].strip() for line in lines] == [
        "whole chunk (render)",
        "fit",
        "100 %",
        "200 %",
    ]
    # a 9-frame chunk is 3 latent frames, one VAE step: every view decodes all 3, once
    assert all(line.endswith("  3x8x8") for line in lines)
