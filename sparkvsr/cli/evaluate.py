"""`eval`: restored clips against the ground truth, as tables and pictures."""

from __future__ import annotations

import sys
from pathlib import Path

from sparkvsr.cli.arguments import sub


def add_eval(commands, name: str) -> None:
    p = sub(
        commands,
        name,
        "Compare restored clips with the ground truth: PSNR/SSIM, LPIPS/DISTS/MUSIQ/CLIP-IQA/NIQE "
        "(with pyiqa), flow-warping error, DOVER/FasterVQA (your installations); writes "
        "table.md, table.csv, results.json, per-frame PSNR plots and X-T slices. Inputs: videos, "
        "folders of frames, or a dataset root with GT/ and LQ/ (one sub-folder per clip).",
    )
    p.add_argument("--gt", type=Path, required=True, help="ground truth (video, frames, dataset)")
    p.add_argument(
        "--pred",
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help="a method's output laid out like --gt (repeatable; NAME defaults to the file name)",
    )
    p.add_argument("--lq", type=Path, help="the LR input, shown in the X-T slices")
    p.add_argument(
        "--metrics",
        nargs="+",
        help="metrics to report (default: all; missing ones are marked unavailable), e.g. "
        "psnr,ssim,lpips,dists,musiq,clipiqa,niqe,ewarp,dover,fastervqa",
    )
    p.add_argument("--y-channel", action="store_true", help="PSNR/SSIM on BT.601 Y, not RGB")
    p.add_argument("--crop", type=int, default=0, help="border pixels dropped before PSNR/SSIM")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--chunk", type=int, default=8, help="frames read at once (memory bound)")
    p.add_argument("--scanline", type=float, default=0.5, help="X-T slice row, 0 top .. 1 bottom")
    p.add_argument("--device", default="cpu", help="torch device for the pyiqa metrics")
    for metric, what in (("dover", "DOVER"), ("fastervqa", "FAST-VQA-and-FasterVQA")):
        p.add_argument(f"--{metric}", type=Path, metavar="DIR", help=f"your {what} checkout")
        p.add_argument(
            f"--{metric}-python",
            default=sys.executable,
            metavar="PYTHON",
            help=f"interpreter of the environment {what} is installed in",
        )
    p.add_argument("--fastervqa-model", default="FasterVQA", help="vqa.py -m (e.g. FAST-VQA)")
    p.add_argument("--vqa-device", default="cpu", help="device for DOVER/FasterVQA (e.g. cuda)")


def _parse_pred(item: str) -> tuple[str, Path]:
    name, sep, path = item.partition("=")
    if sep and name and not Path(item).exists():
        return name, Path(path)
    path = Path(item)
    return path.stem or path.name, path


def run_eval(args) -> int:
    from tqdm import tqdm

    from sparkvsr.evaluation import EvalRequest, VQAInstall, evaluate

    # 1. The request (checked when built).
    names = [n.strip() for item in args.metrics or () for n in item.split(",") if n.strip()]
    installs = []
    if args.dover:
        installs.append(VQAInstall("dover", args.dover, args.dover_python, args.vqa_device))
    if args.fastervqa:
        installs.append(
            VQAInstall(
                "fastervqa", args.fastervqa, args.fastervqa_python, args.vqa_device,
                model=args.fastervqa_model,
            )
        )  # fmt: skip
    extra = {"metrics": tuple(names)} if names else {}
    request = EvalRequest(
        gt=args.gt,
        preds=tuple(_parse_pred(item) for item in args.pred),
        out_dir=args.output,
        lq=args.lq,
        y_channel=args.y_channel,
        crop=args.crop,
        chunk=args.chunk,
        scanline=args.scanline,
        device=args.device,
        vqa=tuple(installs),
        **extra,
    )
    # 2. Evaluate with a progress bar on stderr (from the first finished chunk, so an input
    #    error stays one line), then print the table.
    bars: list = []

    def show(update) -> None:
        if not bars:
            bars.append(tqdm(total=update.total, unit="frame", file=sys.stderr))
        bars[0].set_description_str(f"eval {update.message}")
        bars[0].update(update.done - bars[0].n)

    try:
        report = evaluate(request, progress=show)
    finally:
        for bar in bars:
            bar.close()
    print(report.table())
    print(f"wrote {', '.join(str(p) for p in report.files)}")
    return 0
