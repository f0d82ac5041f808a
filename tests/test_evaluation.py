"""Evaluation runs: inputs and layouts, streaming, tables and pictures, optional metrics, the CLI."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import textwrap
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from sparkvsr import evaluation, metrics
from sparkvsr.errors import EvaluationError
from sparkvsr.evaluation import EvalRequest, VQAInstall, evaluate
from sparkvsr.media import VideoWriter, read_image, write_image

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 1.5)


def _moving_clip(frames: int = 6, height: int = 40, width: int = 48, seed: int = 0) -> np.ndarray:
    """A texture panning one pixel per frame: ``[frames, height, width, 3]`` uint8."""
    scene = _texture(height, width + frames, seed)
    return np.stack([scene[:, t : t + width] for t in range(frames)])


def _noisy(clip: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, clip.shape)
    return np.clip(clip + noise, 0, 255).astype(np.uint8)


def _blurred(clip: np.ndarray) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in clip])


def _downscaled(clip: np.ndarray, factor: int) -> np.ndarray:
    h, w = clip.shape[1] // factor, clip.shape[2] // factor
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in clip])


def _frames_folder(path: Path, clip: np.ndarray) -> Path:
    for i, frame in enumerate(clip):
        write_image(path / f"{i:04d}.png", frame)
    return path


def _lossless_video(path: Path, clip: np.ndarray) -> Path:
    with VideoWriter(path, 25, lossless=True) as writer:
        writer.write(clip)
    return path


@pytest.fixture
def no_pyiqa(monkeypatch):
    """Run as on a machine without the optional extra, whatever this one has."""
    monkeypatch.setitem(sys.modules, "pyiqa", None)


def _cli():
    if importlib.util.find_spec("sparkvsr.cli") is None:
        pytest.skip("sparkvsr/cli.py (the lead's) is not in the tree yet")
    from sparkvsr import cli

    if "eval" not in cli.COMMANDS:
        pytest.skip("the eval subcommand is not registered in sparkvsr/cli.py yet")
    return cli


# ---------------------------------------------------------------------------------------------
# One clip through the CLI


def test_eval_cli_writes_all_files_and_marks_missing_metrics_unavailable(
    tmp_path, no_pyiqa, capsys
):
    cli = _cli()
    gt = _moving_clip()
    noisy, blurred = _noisy(gt, 12), _blurred(gt)
    gt_dir = _frames_folder(tmp_path / "walk", gt)
    noisy_dir = _frames_folder(tmp_path / "noisy", noisy)
    blur_video = _lossless_video(tmp_path / "blur.mkv", blurred)
    lq_dir = _frames_folder(tmp_path / "lq", _downscaled(gt, 2))
    out = tmp_path / "report"

    code = cli.main(
        ["eval", "--gt", str(gt_dir), "--pred", f"noisy={noisy_dir}", "--pred", f"blur={blur_video}",
         "--lq", str(lq_dir), "-o", str(out)]
    )  # fmt: skip

    assert code == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "eval walk" in captured.err and "6/6" in captured.err  # the progress bar
    for name in ("table.md", "table.csv", "results.json", "psnr_walk.png", "xt_walk.png"):
        assert (out / name).is_file(), name
    table = (out / "table.md").read_text()
    assert table in printed  # the CLI prints the same table it writes
    # Every catalogued metric has a column; the ones that cannot run say so, with the reason.
    for spec in metrics.METRICS.values():
        assert spec.header in table
    lpips_row = next(line for line in table.splitlines() if line.startswith("| noisy"))
    assert lpips_row.count("unavailable") == 7  # 5 pyiqa metrics + DOVER + FasterVQA
    assert "- LPIPS: pyiqa is not installed" in table
    assert "- DOVER: not configured: pass --dover DIR" in table

    results = json.loads((out / "results.json").read_text())
    noisy_psnr = np.mean([metrics.psnr(p, g) for p, g in zip(noisy, gt)])
    summary = {row["method"]: row["scores"] for row in results["summary"]}
    assert summary["noisy"]["psnr"]["value"] == pytest.approx(noisy_psnr)
    assert summary["blur"]["ssim"]["value"] == pytest.approx(
        np.mean([metrics.ssim(p, g) for p, g in zip(blurred, gt)])
    )
    assert summary["noisy"]["lpips"] == {
        "value": None,
        "available": False,
        "reason": summary["noisy"]["lpips"]["reason"],
    }
    assert "pyiqa" in summary["noisy"]["lpips"]["reason"]
    # Per-frame noise flickers; a steady blur does not.
    assert summary["noisy"]["ewarp"]["value"] > 5 * summary["blur"]["ewarp"]["value"]

    csv_rows = (out / "table.csv").read_text().splitlines()
    assert csv_rows[0].split(",")[:4] == ["clip", "method", "frames", "psnr"]
    assert "unavailable" in csv_rows[1]

    xt = read_image(out / "xt_walk.png")
    plot = read_image(out / "psnr_walk.png")
    assert xt.shape[1] > xt.shape[0] and plot.std() > 0  # four panels side by side


def test_eval_cli_errors_exit_2_with_one_clear_line(tmp_path, capsys):
    cli = _cli()
    gt_dir = _frames_folder(tmp_path / "gt", _moving_clip(frames=6))
    short = _frames_folder(tmp_path / "short", _moving_clip(frames=4))

    code = cli.main(
        ["eval", "--gt", str(tmp_path / "nope"), "--pred", str(short), "-o", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "nope" in err and "does not exist" in err

    code = cli.main(
        ["eval", "--gt", str(gt_dir), "--pred", f"x={short}", "-o", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "4 frames" in err and "6" in err and "Traceback" not in err

    code = cli.main(
        [
            "eval",
            "--gt",
            str(gt_dir),
            "--pred",
            str(gt_dir),
            "--metrics",
            "psnr,fid",
            "-o",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert "unknown metric 'fid'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Library


def test_dataset_root_with_gt_and_lq_folders_evaluates_every_clip(tmp_path, no_pyiqa):
    root = tmp_path / "UDM10"
    clips = {"archpeople": _moving_clip(seed=2), "auditorium": _moving_clip(frames=5, seed=3)}
    preds = tmp_path / "method"
    for name, clip in clips.items():
        _frames_folder(root / "GT" / name, clip)
        _frames_folder(root / "LQ" / name, _downscaled(clip, 4))
    _lossless_video(preds / "archpeople.mkv", _noisy(clips["archpeople"], 8))
    _frames_folder(preds / "auditorium", _noisy(clips["auditorium"], 16))

    report = evaluate(
        EvalRequest(
            gt=root, preds=(("ours", preds),), out_dir=tmp_path / "out", metrics=("psnr", "ssim")
        )
    )

    assert report.clips == ("archpeople", "auditorium")
    per_clip = {r.clip: r.score("psnr").value for r in report.results}
    assert per_clip["archpeople"] > per_clip["auditorium"]  # less noise
    assert report.summary[0].score("psnr").value == pytest.approx(np.mean(list(per_clip.values())))
    assert report.summary[0].frames == 11
    assert len(report.results[1].psnr_per_frame) == 5
    for name in clips:
        assert (tmp_path / "out" / f"xt_{name}.png").is_file()
        assert (tmp_path / "out" / f"psnr_{name}.png").is_file()
    assert "## auditorium (5 frames)" in report.table()
    assert "Unavailable" not in report.table()  # only available metrics were asked for


def test_frames_equal_to_the_gt_are_left_out_of_the_psnr_mean_and_said(tmp_path, no_pyiqa):
    # A keyframe whose reference is the GT reproduces it exactly: PSNR = inf for that frame.
    gt = _moving_clip(frames=6)
    pred = _noisy(gt, 8)
    pred[0] = gt[0]
    gt_path = _lossless_video(tmp_path / "gt.mkv", gt)
    pred_path = _lossless_video(tmp_path / "pred.mkv", pred)
    report = evaluate(
        EvalRequest(gt=gt_path, preds=(("ours", pred_path),), out_dir=tmp_path / "out")
    )
    score = report.summary[0].score("psnr")
    per_frame = report.results[0].psnr_per_frame
    assert math.isinf(per_frame[0]) and all(math.isfinite(v) for v in per_frame[1:])
    assert score.value == pytest.approx(np.mean(per_frame[1:]))
    assert "1 of 6 frames equal the GT" in report.table()


def test_a_prediction_missing_a_clip_is_named(tmp_path):
    root = tmp_path / "set"
    _frames_folder(root / "GT" / "calendar", _moving_clip())
    _frames_folder(root / "GT" / "city", _moving_clip())
    _frames_folder(tmp_path / "pred" / "calendar", _moving_clip())
    request = EvalRequest(gt=root, preds=(("ours", tmp_path / "pred"),), out_dir=tmp_path / "o")
    with pytest.raises(EvaluationError, match=r"prediction ours .* has no clip 'city'"):
        evaluate(request)


def test_request_is_checked_first(tmp_path):
    with pytest.raises(EvaluationError, match="used twice"):
        EvalRequest(tmp_path, (("a", tmp_path), ("a", tmp_path)), tmp_path)
    with pytest.raises(EvaluationError, match="at least one prediction"):
        EvalRequest(tmp_path, (), tmp_path)
    with pytest.raises(EvaluationError, match="crop -1"):
        EvalRequest(tmp_path, (("a", tmp_path),), tmp_path, crop=-1)


def test_frames_stream_in_chunks_and_are_read_once(tmp_path, no_pyiqa, monkeypatch):
    gt = _moving_clip(frames=11)
    gt_dir = _frames_folder(tmp_path / "gt", gt)
    pred_dir = _frames_folder(tmp_path / "pred", _noisy(gt, 5))
    reads: list[tuple[str, int, int]] = []
    original = evaluation.Clip.read

    def spy(self, start, stop):
        reads.append((Path(self.info.path).name, start, stop))
        return original(self, start, stop)

    monkeypatch.setattr(evaluation.Clip, "read", spy)
    request = EvalRequest(
        gt_dir, (("p", pred_dir),), tmp_path / "o", metrics=("psnr", "ewarp"), chunk=4,
        y_channel=True, crop=2,
    )  # fmt: skip
    report = evaluate(request)
    assert max(stop - start for _, start, stop in reads) <= 4
    for source in ("gt", "pred"):
        spans = sorted((a, b) for name, a, b in reads if name == source)
        assert spans == [(0, 4), (4, 8), (8, 11)]  # every frame once, nothing twice
    # The chunked run gives exactly the per-frame values of the whole clip (Y channel, crop 2).
    pred = _noisy(gt, 5)
    expected = [metrics.psnr(p, g, y_channel=True, crop=2) for p, g in zip(pred, gt)]
    assert report.results[0].psnr_per_frame == pytest.approx(expected)
    whole = [metrics.warping_error(a, b, metrics.pair_flow(c, d)) for a, b, c, d in
             zip(pred, pred[1:], gt, gt[1:])]  # fmt: skip
    assert report.summary[0].score("ewarp").value == pytest.approx(np.mean(whole))


def test_pyiqa_metrics_are_reported_when_the_extra_is_installed(fake_pyiqa, tmp_path):
    gt = _moving_clip(frames=5)
    pred = _noisy(gt, 10)
    request = EvalRequest(
        _frames_folder(tmp_path / "gt", gt),
        (("p", _frames_folder(tmp_path / "pred", pred)),),
        tmp_path / "o",
        metrics=("lpips", "musiq", "niqe"),
        chunk=2,
    )
    row = evaluate(request).summary[0]
    assert row.score("lpips").value == pytest.approx(
        np.abs(pred / 255.0 - gt / 255.0).mean(), rel=1e-5
    )
    assert row.score("niqe").value == pytest.approx((pred / 255.0).mean(), rel=1e-5)
    musiq = row.score("musiq")
    assert musiq.value is None and "no network" in musiq.reason


FAKE_DOVER = textwrap.dedent(
    """
    # Stand-in for DOVER's evaluate_one_video.py: same flags, same final line.
    import argparse, av, numpy as np
    parser = argparse.ArgumentParser()
    parser.add_argument("-v", "--video_path")
    parser.add_argument("-d", "--device", default="cuda")
    parser.add_argument("-f", "--fusion", action="store_true")
    args = parser.parse_args()
    assert args.fusion and args.device == "cpu"
    with av.open(args.video_path) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    print("dict_keys(['aesthetic', 'technical'])")
    print(0.123)
    print("Normalized fused overall score (scale in [0,1]):", np.mean(frames) / 255)
    """
)

FAKE_FASTERVQA = textwrap.dedent(
    """
    import sys
    print("Traceback (most recent call last):", file=sys.stderr)
    print("FileNotFoundError: ./pretrained_weights/FAST_VQA_3D_1*1.pth", file=sys.stderr)
    sys.exit(1)
    """
)


def test_dover_and_fastervqa_run_from_the_users_installation(tmp_path, no_pyiqa):
    dover, faster = tmp_path / "DOVER", tmp_path / "FAST-VQA"
    dover.mkdir()
    faster.mkdir()
    (dover / "evaluate_one_video.py").write_text(FAKE_DOVER)
    (faster / "vqa.py").write_text(FAKE_FASTERVQA)
    gt = _moving_clip(frames=4)
    pred = _noisy(gt, 6)
    request = EvalRequest(
        _frames_folder(tmp_path / "gt", gt),
        (("p", _frames_folder(tmp_path / "pred", pred)),),  # frames: sent as a lossless video
        tmp_path / "o",
        metrics=("psnr", "dover", "fastervqa"),
        vqa=(VQAInstall("dover", dover), VQAInstall("fastervqa", faster)),
    )
    report = evaluate(request)
    row = report.summary[0]
    assert row.score("dover").value == pytest.approx(pred.mean() / 255, abs=1e-6)
    faster_score = row.score("fastervqa")
    assert faster_score.value is None
    assert "exited 1 without a score" in faster_score.reason
    assert "pretrained_weights" in faster_score.reason
    assert "FasterVQA: " in report.table() and "unavailable" in report.table()


def test_an_installation_without_the_script_is_unavailable(tmp_path, no_pyiqa):
    gt_dir = _frames_folder(tmp_path / "gt", _moving_clip(frames=3))
    request = EvalRequest(
        gt_dir, (("p", gt_dir),), tmp_path / "o", metrics=("psnr", "dover"),
        vqa=(VQAInstall("dover", tmp_path),),
    )  # fmt: skip
    score = evaluate(request).summary[0].score("dover")
    assert score.value is None and "no evaluate_one_video.py" in score.reason
    assert math.isinf(evaluate(request).summary[0].score("psnr").value)  # identical frames


# ---------------------------------------------------------------------------------------------
# Acceptance: the flow engine's output for Vid4 walk


def _first_frames(path: Path, count: int) -> np.ndarray:
    """The first ``count`` frames, decoded with PyAV directly (no need to scan the whole clip)."""
    with av.open(str(path)) as container:
        frames = [
            f.to_ndarray(format="rgb24") for _, f in zip(range(count), container.decode(video=0))
        ]
    return np.stack(frames)


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real clips) is not present")
def test_eval_on_flow_engine_output_for_vid4_walk(tmp_path, no_pyiqa, capsys):
    if importlib.util.find_spec("sparkvsr.engines.flow") is None:
        pytest.skip("the flow engine (sparkvsr/engines/flow/) has not landed yet")
    cli = _cli()
    from sparkvsr.engines import load_engine
    from sparkvsr.engines.base import RestoreOptions
    from sparkvsr.frames import ArrayFrames

    # 1. GT: the first 12 frames of Vid4 walk; LR: the same downscaled x4 (180x120).
    gt = _first_frames(DATA / "yhjo09_Vid4_G_walk_ffv1.mkv", 12)
    lr = _downscaled(gt, 4)
    bicubic = np.stack([cv2.resize(f, (720, 480), interpolation=cv2.INTER_CUBIC) for f in lr])
    # 2. Restore with the flow engine; frame 0's Reference is a near-perfect HR image (the GT
    #    through JPEG at quality 90, as an editor's output would be: close, never identical).
    _, jpeg = cv2.imencode(".jpg", gt[0][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    reference = np.ascontiguousarray(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1])
    engine = load_engine("flow")
    chunks = engine.restore(ArrayFrames(lr), {0: reference}, RestoreOptions(guidance=1.0, scale=4))
    restored = np.concatenate([chunk.frames for chunk in chunks])
    assert restored.shape == gt.shape
    gt_video = _lossless_video(tmp_path / "walk.mkv", gt)
    lq_video = _lossless_video(tmp_path / "walk_lr.mkv", lr)
    flow_video = _lossless_video(tmp_path / "flow.mkv", restored)
    bicubic_video = _lossless_video(tmp_path / "bicubic.mkv", bicubic)
    out = tmp_path / "report"

    # 3. Evaluate both against the GT through the CLI.
    code = cli.main(
        ["eval", "--gt", str(gt_video), "--lq", str(lq_video), "--pred", f"flow={flow_video}",
         "--pred", f"bicubic={bicubic_video}", "--crop", "4", "-o", str(out)]
    )  # fmt: skip

    assert code == 0
    for name in ("table.md", "table.csv", "results.json", "psnr_walk.png", "xt_walk.png"):
        assert (out / name).is_file(), name
    table = (out / "table.md").read_text()
    assert "| flow |" in table and "| bicubic |" in table
    assert "- LPIPS: pyiqa is not installed" in table
    results = json.loads((out / "results.json").read_text())
    flow = next(r for r in results["results"] if r["method"] == "flow")
    bic = next(r for r in results["results"] if r["method"] == "bicubic")
    # At the keyframe with s = 1 the flow engine reproduces its Reference: far above bicubic,
    # and the Reference's detail carried to later frames keeps the clip mean above bicubic.
    assert flow["psnr_per_frame"][0] > bic["psnr_per_frame"][0] + 8
    summary = {row["method"]: row["scores"] for row in results["summary"]}
    assert summary["flow"]["psnr"]["value"] > summary["bicubic"]["psnr"]["value"]
    assert read_image(out / "xt_walk.png").shape[0] > 100
