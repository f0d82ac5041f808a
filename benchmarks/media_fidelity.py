"""Media fidelity: each odd input of tests/media_corpus.py through `python -m sparkvsr restore`
(flow engine), read back with PyAV, one table row per case: what was measured and whether it holds.

    .venv/bin/python benchmarks/media_fidelity.py                # this checkout
    .venv/bin/python benchmarks/media_fidelity.py --repo ../old   # another checkout (before/after)

Inputs are made with Debian's ffmpeg and PyAV into a temporary folder; nothing is kept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import media_corpus as mc  # noqa: E402


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float


def restore(repo: Path, src: Path, out: Path, *args: str) -> Run:
    """`python -m sparkvsr restore` in ``repo``; peak RSS of the child from wait4."""
    cmd = [sys.executable, "-m", "sparkvsr", "restore", str(src), "-o", str(out), *args]
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        proc = subprocess.Popen(cmd, cwd=repo, stdout=so, stderr=se)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0)
        se.seek(0)
        return Run(
            proc.returncode, so.read(), se.read(), time.monotonic() - start, usage.ru_maxrss / 1024
        )


def probe_json(repo: Path, path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "sparkvsr", "probe", str(path), "--json"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr.strip()}


def notes(run: Run) -> str:
    return " | ".join(line[6:] for line in run.stderr.splitlines() if line.startswith("note: "))


def failed(run: Run) -> str:
    lines = [line for line in run.stderr.splitlines() if line.startswith("error")]
    return f"restore exit {run.code}: {(lines or [run.stderr.strip()[-160:]])[-1][:160]}"


# ---------------------------------------------------------------------------------------------
# Cases: each returns (holds, what was measured)

Result = tuple[bool, str]


def case_vfr(repo: Path, tmp: Path) -> Result:
    src = mc.make_vfr(tmp / "vfr.mp4")
    info = probe_json(repo, src)
    run = restore(repo, src, tmp / "vfr_out.mp4", "--scale", "2")
    if run.code:
        return False, f"probe vfr={info.get('vfr')}; " + failed(run)
    a = np.array(mc.read_video(src, 0)[0].times)
    b = np.array(mc.read_video(tmp / "vfr_out.mp4", 0)[0].times)
    if len(a) != len(b):
        return False, f"probe vfr={info.get('vfr')}; {len(b)} frames out of {len(a)}"
    err = np.abs((b - b[0]) - (a - a[0])).max() * 1000
    ok = bool(info.get("vfr")) and err <= 1
    return (
        ok,
        f"probe vfr={info.get('vfr')}; max frame time error {err:.2f} ms, span {b[-1] - b[0]:.3f} s",
    )


def _avi(codec: str, rate: str, want: float) -> Callable[[Path, Path], Result]:
    def case(repo: Path, tmp: Path) -> Result:
        src = mc.make_avi_bframes(tmp / f"{codec}.avi", codec, rate)
        info = probe_json(repo, src)
        head = f"probe {info.get('fps')} fps vfr={info.get('vfr')}"
        run = restore(repo, src, tmp / f"{codec}_out.mp4", "--scale", "2")
        if run.code:
            return False, f"{head}; " + failed(run)
        times = np.array(mc.read_video(tmp / f"{codec}_out.mp4", 0)[0].times)
        deltas = np.diff(times)
        out_fps = 1 / deltas.mean()
        cfr = float(np.ptp(deltas)) < 1e-3
        ok = abs(info.get("fps", 0) - want) < 0.001 and not info.get("vfr") and cfr
        ok = ok and abs(out_fps - want) < 0.01
        return ok, f"{head}; out {out_fps:.3f} fps, CFR={cfr}, {len(times)} frames"

    return case


def _offsets(maker: Callable[[Path], Path], name: str) -> Callable[[Path, Path], Result]:
    def case(repo: Path, tmp: Path) -> Result:
        src = maker(tmp / name)
        out = tmp / f"out_{Path(name).stem}.mp4"
        run = restore(repo, src, out, "--scale", "2")
        want = mc.audio_starts(src)
        if run.code:
            return False, f"source offsets {_fmt(want)}; " + failed(run)
        got = mc.audio_starts(out)
        ok = len(got) == len(want) and all(abs(g - w) <= 0.020 for g, w in zip(got, want))
        return ok, f"audio - video start: source {_fmt(want)}, output {_fmt(got)}"

    return case


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:+.3f}" for v in values) + "] s"


def case_sar(repo: Path, tmp: Path) -> Result:
    src = mc.make_sar(tmp / "sar.mp4")
    run = restore(repo, src, tmp / "sar_out.mp4", "--scale", "2")
    a = mc.read_video(src, 0)[0]
    want = a.width * a.sar / a.height
    if run.code:
        return False, failed(run)
    b = mc.read_video(tmp / "sar_out.mp4", 0)[0]
    got = b.width * b.sar / b.height
    err = abs(float(got / want) - 1)
    return err <= 0.01, f"DAR source {float(want):.3f}, output {float(got):.3f} (SAR {b.sar})"


def _colour(case_name: str, *extra: str, suffix: str = ".mp4") -> Callable[[Path, Path], Result]:
    def case(repo: Path, tmp: Path) -> Result:
        src = mc.make_colour(tmp / f"{case_name}.mp4", case_name)
        out = tmp / f"{case_name}_out{suffix}"
        run = restore(repo, src, out, "--scale", "4", *extra)
        if run.code:
            return False, failed(run)
        _, a = mc.read_video(src, 3)
        b_info, b = mc.read_video(out, 3)
        err = np.abs(mc.patch_means(a[2]) - mc.patch_means(b[2])).max()
        tags = b_info.tags
        text = f"max patch error {err:.1f} levels; out {b_info.pix_fmt} {tags['matrix']}/{tags['range']}/{tags['primaries']}/{tags['transfer']}"
        if "--tonemap" in extra:
            grey = mc.patch_means(b[2])[3].mean()
            sdr = tags["transfer"] == "bt709" and b_info.pix_fmt == "yuv420p"
            said = "tone-mapped" in notes(run)
            return sdr and said, text + f"; PQ grey (94 nits) -> {grey:.0f}; said={said}"
        if case_name == "pq":
            kept = "2084" in tags["transfer"].upper() or "PQ" in tags["transfer"].upper()
            said = "HDR" in notes(run) or "PQ" in notes(run)
            return kept and said and err <= 4, text + f"; note: {notes(run)[:80] or '(none)'}"
        return err <= 4, text

    return case


def case_interlaced(repo: Path, tmp: Path) -> Result:
    src = mc.make_interlaced(tmp / "int.mp4")
    info = probe_json(repo, src)
    out = tmp / "int_out.mp4"
    run = restore(repo, src, out, "--scale", "2")
    head = f"probe field_order={info.get('field_order', '(absent)')}"
    if run.code:
        return False, head + "; " + failed(run)
    _, a = mc.read_video(src, 8)
    _, b = mc.read_video(out, 8)
    ca = np.mean([mc.combing(f) for f in a[2:8]])
    cb = np.mean([mc.combing(mc.down_to(f, a[0].shape[1], a[0].shape[0])) for f in b[2:8]])
    said = "deinterlac" in notes(run)
    return cb < 0.5 * ca and said, f"{head}; combing source {ca:.1f}, output {cb:.1f}; said={said}"


def _surround(codec: str, src_name: str, out_name: str) -> Callable[[Path, Path], Result]:
    def case(repo: Path, tmp: Path) -> Result:
        src = mc.make_surround(tmp / src_name, codec)
        out = tmp / out_name
        run = restore(repo, src, out, "--scale", "2")
        if run.code:
            return False, failed(run)
        streams = mc.audio_streams(out)
        got = [(s["codec"], s["channels"]) for s in streams]
        return bool(got) and all(ch == 6 for _, ch in got), f"out audio {got}"

    return case


def _tracks(out_name: str) -> Callable[[Path, Path], Result]:
    def case(repo: Path, tmp: Path) -> Result:
        src = mc.make_tracks(tmp / "tracks.mkv")
        out = tmp / out_name
        run = restore(repo, src, out, "--scale", "2")
        if run.code:
            return False, failed(run)
        langs = [(s["language"], s["title"]) for s in mc.audio_streams(out)]
        subs = mc.subtitle_count(out)
        lang_ok = [lang for lang, _ in langs] == ["eng", "deu"]
        if out_name.endswith(".mkv"):
            return lang_ok and subs == 1, f"audio {langs}, subtitles {subs}"
        said = "subtitle" in notes(run)
        return lang_ok and said, f"audio {langs}, subtitles {subs}, said={said}"

    return case


def case_opus_mov(repo: Path, tmp: Path) -> Result:
    src = mc.make_opus(tmp / "opus.mkv")
    out = tmp / "opus_out.mov"
    run = restore(repo, src, out, "--scale", "2")
    if run.code:
        return False, failed(run)
    streams = mc.audio_streams(out)
    said = bool(notes(run))
    return bool(
        streams
    ) and said, f"out audio {[s['codec'] for s in streams]}; note: {notes(run)[:70]}"


def case_alpha(repo: Path, tmp: Path) -> Result:
    src = mc.make_alpha(tmp / "alpha.mkv")
    run = restore(repo, src, tmp / "alpha_out.mp4", "--scale", "2")
    if run.code:
        return False, failed(run)
    said = "alpha" in notes(run)
    return said, f"said={said}"


def case_in_place(repo: Path, tmp: Path) -> Result:
    src = mc.make_plain(tmp / "plain.mp4")
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    run = restore(repo, src, src, "--scale", "2")
    same = hashlib.sha256(src.read_bytes()).hexdigest() == before
    link = tmp / "link.mp4"
    os.link(src, link)
    run_link = restore(repo, src, link, "--scale", "2")
    same_link = hashlib.sha256(src.read_bytes()).hexdigest() == before
    ok = run.code == 2 and run_link.code == 2 and same and same_link
    return (
        ok,
        f"same path: exit {run.code}, source unchanged={same}; hard link: exit {run_link.code}, unchanged={same_link}",
    )


def case_big(repo: Path, tmp: Path) -> Result:
    src = mc.make_big(tmp / "big.mp4")
    run = restore(repo, src, tmp / "big_out.mp4")
    refused = run.code == 2 and run.seconds < 20
    sized = restore(repo, src, tmp / "big_small.mp4", "--output-size", "1024x540")
    text = (
        f"x4: exit {run.code} after {run.seconds:.1f} s, peak {run.peak_rss_mb:.0f} MB"
        + (f" ({failed(run)[15:90]})" if run.code else "")
        + f"; --output-size 1024x540: exit {sized.code}, peak {sized.peak_rss_mb:.0f} MB"
    )
    return refused and sized.code == 0 and sized.peak_rss_mb < 3072, text


CASES: dict[str, Callable[[Path, Path], Result]] = {
    "VFR, jitter + 100 ms gap": case_vfr,
    "AVI MPEG-4 ASP B-frames, 25": _avi("mpeg4", "25", 25.0),
    "AVI H.264 B-frames, 23.976": _avi("libx264", "24000/1001", 24000 / 1001),
    "audio -0.5 s / +0.5 s (mp4)": _offsets(mc.make_audio_offsets, "offsets.mp4"),
    "MPEG-TS, audio +0.3 s": _offsets(mc.make_ts_offsets, "offsets.ts"),
    "MPEG-PS (DVD), audio +0.5 s": _offsets(mc.make_ps_offsets, "offsets.mpg"),
    "SAR 32:27": case_sar,
    "BT.709 limited": _colour("bt709"),
    "BT.601": _colour("bt601"),
    "full range": _colour("full-range"),
    "10-bit": _colour("10-bit"),
    "PQ (HDR10)": _colour("pq"),
    "PQ --tonemap": _colour("pq", "--tonemap"),
    "10-bit --codec h265 (.mkv)": _colour("10-bit", "--codec", "h265", suffix=".mkv"),
    "interlaced tff": case_interlaced,
    "5.1 AAC -> mp4": _surround("aac", "aac51.mp4", "aac51_out.mp4"),
    "5.1 PCM -> mp4": _surround("pcm_s16le", "pcm51.mov", "pcm51_out.mp4"),
    "5.1 PCM -> mov": _surround("pcm_s16le", "pcm51.mov", "pcm51_out.mov"),
    "2 audio langs + subtitle -> mkv": _tracks("tracks_out.mkv"),
    "2 audio langs + subtitle -> mp4": _tracks("tracks_out.mp4"),
    "Opus -> mov": case_opus_mov,
    "alpha -> mp4": case_alpha,
    "in-place output": case_in_place,
    "4096x2160 input": case_big,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout whose code runs")
    parser.add_argument("-k", help="only cases whose name contains this")
    args = parser.parse_args()
    print(f"| case | holds | measured ({args.repo.resolve()}) |\n|---|---|---|", flush=True)
    for name, case in CASES.items():
        if args.k and args.k.lower() not in name.lower():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                ok, text = case(args.repo.resolve(), Path(tmp))
            except Exception as e:  # a broken output is a result too
                ok, text = False, f"{type(e).__name__}: {str(e)[:150]}"
        print(f"| {name} | {'yes' if ok else 'NO'} | {text} |", flush=True)


if __name__ == "__main__":
    main()
