"""Peak memory of the studio server while a 720p clip renders at x4 from the page.

Starts ``app.py`` (in-process flow worker, a fresh projects folder), then drives the page in
Debian chromium as a user would: upload the clip, pin two keyframes, make classic References,
press Render and, while it renders, keep moving the scrubber and the guidance slider (each
move asks for a full-quality 4x preview beside the render). The server's resident memory is
sampled every 0.2 s; its peak (``VmHWM``) is printed with the render time.

    python benchmarks/studio_memory.py                       # imageio_cockatoo.mp4, 60 frames
    python benchmarks/studio_memory.py --clip other.mp4 --frames 30

The issue's target: under 4 GB peak for the whole server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = ROOT / ".." / "shared" / "data" / "imageio_cockatoo.mp4"
CHROMIUM = "/usr/bin/chromium"


def trim(source: Path, frames: int, out: Path) -> Path:
    """The first ``frames`` frames of ``source`` as H.264 (PyAV), keeping its size and rate."""
    import av

    with av.open(str(source)) as inp, av.open(str(out), "w") as dst:
        src = inp.streams.video[0]
        stream = dst.add_stream("libx264", rate=src.average_rate)
        stream.width, stream.height, stream.pix_fmt = src.width, src.height, "yuv420p"
        stream.options = {"crf": "16"}
        for index, frame in enumerate(inp.decode(video=0)):
            if index >= frames:
                break
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return out


class RssSampler(threading.Thread):
    """Samples a process's resident memory (``/proc/PID/status``) until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_rss, self.hwm = pid, 0, 0
        self._halt = threading.Event()

    def read(self) -> tuple[int, int]:
        values = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    values[name] = int(value.split()[0]) * 1024
        return values.get("VmRSS", 0), values.get("VmHWM", 0)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                rss, self.hwm = self.read()
            except OSError:
                return
            self.peak_rss = max(self.peak_rss, rss)
            time.sleep(0.2)

    def stop(self) -> None:
        self._halt.set()
        with contextlib.suppress(OSError):
            _, self.hwm = self.read()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"app.py exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"app.py did not answer on {url}")


def text_has(selector: str, text: str) -> str:
    return (
        f"() => {{ const e = document.querySelector({selector!r}); "
        f"return !!e && e.innerText.includes({text!r}); }}"
    )


def drive(url: str, clip: Path, moves_every: float) -> tuple[float, int]:
    """Upload, pin, reference, render with previews moving; returns (render seconds, moves)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.set_default_timeout(600_000)
        page.goto(url)
        page.wait_for_selector("#frame-view img")
        page.click("#open")
        page.set_input_files("#clip-upload input[type=file]", str(clip))
        page.wait_for_function(text_has("#clip-title", clip.name))
        last = int(page.locator("#scrubber input[type=number]").get_attribute("max") or 1)
        for index, frame in enumerate((0, min(40, last))):
            page.locator("#scrubber input[type=number]").fill(str(frame))
            page.wait_for_function(text_has("#frame-index", f"Frame {frame} /"))
            page.click("#pin")
            page.wait_for_selector(f'#timeline .tl-key[data-frame="{frame}"]')
            page.locator("#keyframe-gallery button.thumbnail-item").nth(index).click()
            page.wait_for_function(text_has("#edit-title", f"Keyframe {frame}"))
            page.click("#make-reference")
            page.wait_for_selector(f'#timeline .tl-key.has-ref[data-frame="{frame}"]')
        start = time.monotonic()
        page.click("#render")
        moves = 0
        while not page.locator('#progress [data-stage="done"]').count():
            if page.locator("#render-message .err-box").count():
                raise SystemExit(page.inner_text("#render-message"))
            frame = (moves * 7) % (last + 1)
            page.locator("#scrubber input[type=number]").fill(str(frame))
            page.locator("#scrubber input[type=number]").press("Enter")
            page.locator("#guidance input[type=number]").fill(f"{0.8 + (moves % 5) * 0.1:.1f}")
            page.locator("#guidance input[type=number]").press("Enter")
            moves += 1
            time.sleep(moves_every)
        seconds = time.monotonic() - start
        browser.close()
    return seconds, moves


def main() -> None:
    import av

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--moves-every", type=float, default=2.0, help="seconds between moves")
    args = parser.parse_args()
    if not args.clip.exists():
        raise SystemExit(f"{args.clip} is absent (real clips live in ../shared/data)")
    with tempfile.TemporaryDirectory(prefix="studio-memory-") as folder:
        clip = trim(args.clip, args.frames, Path(folder) / f"{args.clip.stem}_{args.frames}.mp4")
        with av.open(str(clip)) as probe:
            width, height = probe.streams.video[0].width, probe.streams.video[0].height
        port = free_port()
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
        command = [sys.executable, str(ROOT / "app.py"), "--port", str(port)]
        command += ["--project", str(Path(folder) / "projects")]
        with open(Path(folder) / "studio.log", "w") as log:
            server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_up(url, server)
            sampler = RssSampler(server.pid)
            idle, _ = sampler.read()
            sampler.start()
            seconds, moves = drive(url, clip, args.moves_every)
            sampler.stop()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print("| clip | frames | output | render s | preview moves | idle RSS | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.clip.name} | {args.frames} | {width * 4}x{height * 4} | {seconds:.0f} | "
        f"{moves} | {idle / 2**30:.2f} GiB | {sampler.hwm / 2**30:.2f} GiB |"
    )
    verdict = "under" if sampler.hwm < 4 * 2**30 else "OVER"
    print(f"peak RSS {sampler.hwm / 2**30:.2f} GiB: {verdict} the 4 GiB target")


if __name__ == "__main__":
    main()
