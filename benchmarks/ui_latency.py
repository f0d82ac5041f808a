"""Studio latency in a real browser (Playwright + Debian chromium, a 1280x720 viewport).

Setup: ``app.py`` serves a clip on the flow engine (in-process worker) on a free port: a
synthetic 320x180 clip (48 frames) written to a temp folder, or each ``--clip`` given (real
footage, e.g. ``../shared/data/imageio_cockatoo.mp4`` at 720p and
``../shared/data/yhjo09_Vid4_G_walk_ffv1.mkv`` at 480p). The script pins keyframes 0 and 32,
makes classic references, and stands on frame 16 (between them, so a preview propagates
both). Then, ``--runs`` times each, it measures inside the page, up to the ``load`` event of
the new ``#preview`` image:

- drag:    guidance slider ``pointerdown`` -> the first updated preview (live or full);
- release: ``pointerup`` -> the full-quality preview naming the new guidance;
- frame:   Enter in the timeline's frame box (a frame not shown before) -> that frame's
           full-quality preview;
- zoom:    a click on 200 % -> the zoomed full-quality preview (and back to Fit untimed).

Prints one row per run and the median of each against its target (250 / 400 / 600 / 400 ms).

Run: ``.venv/bin/python benchmarks/ui_latency.py [--runs 10] [--clip PATH ...]
[--chromium /usr/bin/chromium]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sparkvsr.media import VideoWriter  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
LR_SIZE = (320, 180)
FRAMES = 48
KEYFRAMES = (0, 32)
PROBE_FRAME = 16
TARGET_MS = 500.0
TARGETS_MS = {"drag": 250.0, "release": 400.0, "frame": 600.0, "zoom": 400.0}
VIEWPORT = {"width": 1280, "height": 720}

# Resolves with the milliseconds from the first ``trigger`` event (capture phase, on an element
# matching ``within``) to the load of the first #preview image after it that has a new src and
# whose label passes ``ready(text)``.
WATCH_JS = """
([trigger, within, needText]) => new Promise((resolve, reject) => {
  let start = null, before = null, finished = false;
  const timeout = setTimeout(() => reject(new Error("no preview update in 120 s")), 120000);
  const preview = document.querySelector("#preview");
  const onTrigger = (event) => {
    if (start !== null || !event.target.closest || !event.target.closest(within)) return;
    if (trigger === "keydown" && event.key !== "Enter") return;
    start = performance.now();
    const img = preview.querySelector("img");
    before = img ? img.getAttribute("src") : null;
  };
  document.addEventListener(trigger, onTrigger, { capture: true });
  const check = () => {
    const img = preview.querySelector("img");
    if (finished || start === null || !img || img.getAttribute("src") === before) return;
    if (needText && !preview.innerText.includes(needText)) return;
    finished = true;
    const done = () => { clearTimeout(timeout); observer.disconnect();
                         document.removeEventListener(trigger, onTrigger, { capture: true });
                         resolve(performance.now() - start); };
    if (img.complete && img.naturalWidth > 0) done();
    else img.addEventListener("load", done, { once: true });
  };
  const observer = new MutationObserver(check);
  observer.observe(preview,
                   { subtree: true, childList: true, attributes: true, characterData: true });
})
"""

# Resolves with the milliseconds from the slider's pointerup to the load of the first preview
# image after it that is both new (another src) and full quality (the live previews that a drag
# also produces say "live preview").
MEASURE_JS = """
() => new Promise((resolve, reject) => {
  let start = null, before = null;
  const timeout = setTimeout(() => reject(new Error("no preview update in 60 s")), 60000);
  const preview = document.querySelector("#preview");
  document.addEventListener("pointerup", () => {
    start = performance.now();
    const img = preview.querySelector("img");
    before = img ? img.getAttribute("src") : null;
  }, { capture: true, once: true });
  let finished = false;
  const check = () => {
    const img = preview.querySelector("img");
    if (finished || start === null || !img || img.getAttribute("src") === before) return;
    if (!preview.innerText.includes("full quality")) return;
    finished = true;
    const done = () => { clearTimeout(timeout); observer.disconnect();
                         resolve(performance.now() - start); };
    if (img.complete && img.naturalWidth > 0) done();
    else img.addEventListener("load", done, { once: true });
  };
  const observer = new MutationObserver(check);
  observer.observe(preview,
                   { subtree: true, childList: true, attributes: true, characterData: true });
})
"""


def make_clip(path: Path) -> Path:
    """A 320x180 clip: a textured background panning right with a bouncing disc and text."""
    width, height = LR_SIZE
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height, width + 2 * FRAMES, 3), dtype=np.uint8)
    texture = cv2.GaussianBlur(texture, (0, 0), 1.5)
    with VideoWriter(path, Fraction(24)) as writer:
        for i in range(FRAMES):
            frame = np.ascontiguousarray(texture[:, 2 * i : 2 * i + width])
            x = int(40 + 240 * i / FRAMES)
            y = int(90 + 50 * np.sin(i / 6))
            cv2.circle(frame, (x, y), 22, (230, 70, 40), -1)
            cv2.putText(
                frame, "SparkVSR", (20 + i, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255,) * 3, 2
            )
            writer.write(frame[None])
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(clip: Path, projects: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "app.py"), str(clip), "--port", str(port)]
    command += ["--project", str(projects)]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"app.py exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("app.py did not start in 180 s")


def wait_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        f"() => {{ const e = document.querySelector({selector!r}); "
        f"return !!e && e.innerText.includes({text!r}); }}"
    )


def scrub_to(page, frame: int) -> None:
    page.locator("#scrubber input[type=number]").fill(str(frame))
    page.locator("#clip-title").click()  # blur: the release event refreshes the preview
    wait_text(page, "#frame-index", f"Frame {frame} /")


def prepare(page) -> None:
    """Pin the keyframes, make classic references, stand on the probe frame."""
    page.wait_for_selector("#preview img")
    for frame in KEYFRAMES:
        scrub_to(page, frame)
        page.click("#pin")
        page.wait_for_selector(f'#timeline .tl-key[data-frame="{frame}"]')
    page.click("#make-all-references")
    for frame in KEYFRAMES:
        page.wait_for_selector(f'#timeline .tl-key.has-ref[data-frame="{frame}"]')
    scrub_to(page, PROBE_FRAME)
    wait_text(page, "#preview", f"Restored frame {PROBE_FRAME} · guidance 1.00 · full quality")


def drag_guidance(page, value: float) -> None:
    slider = page.locator("#guidance input[type=range]")
    slider.scroll_into_view_if_needed()
    track = slider.bounding_box()
    current = float(page.locator("#guidance input[type=number]").input_value())
    y = track["y"] + track["height"] / 2

    def x_of(v: float) -> float:
        # The thumb's centre travels the track minus its own width (about 16 px).
        return track["x"] + 8 + (track["width"] - 16) * v / 2.0

    page.mouse.move(x_of(current), y)
    page.mouse.down()
    for step in range(1, 5):
        page.mouse.move(x_of(current + (value - current) * step / 4), y)
        time.sleep(0.03)
    page.mouse.up()


def measure(page, value: float) -> tuple[float, float, tuple[int, int], str]:
    """One release: (latency ms, guidance the page settled on, preview image size, what the
    preview shows once things settle: "full" or, if a late live image replaced it, "STALE")."""
    # Start the in-page watcher without waiting for it; collect its promise after the drag.
    page.evaluate(f"() => {{ window.__latency = ({MEASURE_JS.strip()})(); }}")
    drag_guidance(page, value)
    elapsed = page.evaluate("() => window.__latency")
    settled = float(page.locator("#guidance input[type=number]").input_value())
    time.sleep(0.4)  # let any straggling update land before judging the final view
    label = f"guidance {settled:.2f} · full quality"
    final = "full" if label in page.inner_text("#preview") else "STALE"
    size = page.evaluate(
        "() => { const i = document.querySelector('#preview img');"
        " return [i.naturalWidth, i.naturalHeight]; }"
    )
    return float(elapsed), settled, tuple(size), final


def watch(page, trigger: str, within: str, need_text: str) -> None:
    """Start an in-page watcher (``WATCH_JS``); collect it with ``collect``."""
    page.evaluate(
        f"(args) => {{ window.__latency = ({WATCH_JS.strip()})(args); }}",
        [trigger, within, need_text],
    )


def collect(page) -> float:
    return float(page.evaluate("() => window.__latency"))


def settle(page) -> None:
    """Wait until the preview shows full quality again (between runs)."""
    wait_text(page, "#preview", "full quality")
    time.sleep(0.3)


def measure_suite(page, runs: int) -> dict[str, list[float]]:
    """``runs`` measurements of each action (see the module docstring) on the probe frame."""
    values = [0.5, 1.5, 0.25, 1.75, 0.75, 1.25, 0.1, 1.9, 0.6, 1.4]
    results: dict[str, list[float]] = {name: [] for name in TARGETS_MS}
    for run in range(runs):
        value = values[run % len(values)]
        # drag: pointerdown -> first new image; then release -> full quality
        watch(page, "pointerdown", "#guidance", "")
        page.evaluate("() => { window.__drag = window.__latency; }")
        page.evaluate(
            f"(args) => {{ window.__release = ({WATCH_JS.strip()})(args); }}",
            ["pointerup", "body", " · full quality"],
        )
        drag_guidance(page, value)
        results["drag"].append(float(page.evaluate("() => window.__drag")))
        results["release"].append(float(page.evaluate("() => window.__release")))
        settle(page)
    for run in range(runs):
        frame = PROBE_FRAME + 1 + run  # a frame not shown before
        box = page.locator("#scrubber input[type=number]")
        box.fill(str(frame))
        watch(page, "keydown", "#scrubber", f"Restored frame {frame} ")
        box.press("Enter")
        results["frame"].append(collect(page))
        wait_text(page, "#preview", f"Restored frame {frame} ")
        settle(page)
    for _ in range(runs):
        watch(page, "click", "#zoom", "full quality")
        page.locator("#zoom label", has_text="200%").click()
        results["zoom"].append(collect(page))
        settle(page)
        page.locator("#zoom label", has_text="Fit").click()
        time.sleep(0.5)
        settle(page)
    return results


def run_clip(clip: Path, runs: int, chromium: str) -> dict[str, list[float]]:
    folder = Path(tempfile.mkdtemp(prefix="sparkvsr-ui-latency-"))
    port = free_port()
    process = start_app(clip, folder / "projects", port, folder / "app.log")
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(600_000)
            page.goto(f"http://127.0.0.1:{port}/")
            prepare(page)
            results = measure_suite(page, runs)
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    return results


def print_suite(clip: Path, size: tuple[int, int], results: dict[str, list[float]]) -> None:
    print(f"\n{clip.name} ({size[0]}x{size[1]}), viewport {VIEWPORT['width']}x{VIEWPORT['height']}")
    print(f"{'action':>8} {'median ms':>10} {'min':>7} {'max':>7} {'target':>7}  runs (ms)")
    for name, values in results.items():
        median = statistics.median(values)
        verdict = "meets" if median <= TARGETS_MS[name] else "misses"
        runs = " ".join(f"{v:.0f}" for v in values)
        print(
            f"{name:>8} {median:>10.0f} {min(values):>7.0f} {max(values):>7.0f} "
            f"{TARGETS_MS[name]:>7.0f}  {runs}  ({verdict})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument(
        "--clip",
        action="append",
        type=Path,
        default=[],
        help="a real clip to measure the four actions on (repeatable)",
    )
    args = parser.parse_args()
    if args.clip:
        from sparkvsr.media import probe

        for clip in args.clip:
            info = probe(clip)
            print_suite(clip, (info.width, info.height), run_clip(clip, args.runs, args.chromium))
        return 0

    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="sparkvsr-ui-latency-"))
    clip = make_clip(folder / "clip_320x180.mp4")
    port = free_port()
    process = start_app(clip, folder / "projects", port, folder / "app.log")
    values = [0.5, 1.5, 0.25, 1.75, 0.75, 1.25, 0.1, 1.9, 0.6, 1.4]
    rows = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{port}/")
            prepare(page)
            for run in range(args.runs):
                value = values[run % len(values)]
                rows.append((run + 1, *measure(page, value)))
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)

    print(
        f"\nStudio latency: guidance release -> full-quality preview shown (flow engine, "
        f"LR {LR_SIZE[0]}x{LR_SIZE[1]}, frame {PROBE_FRAME}, keyframes {KEYFRAMES})"
    )
    print(f"{'run':>4} {'guidance':>9} {'preview size':>13} {'latency ms':>11} {'final view':>11}")
    for run, ms, guidance, size, final in rows:
        print(f"{run:>4} {guidance:>9.2f} {size[0]:>6}x{size[1]:<6} {ms:>11.0f} {final:>11}")
    latencies = [row[1] for row in rows]
    median = statistics.median(latencies)
    verdict = "meets" if median <= TARGET_MS else "misses"
    print(
        f"median {median:.0f} ms (min {min(latencies):.0f}, max {max(latencies):.0f}) over "
        f"{len(rows)} runs: {verdict} the {TARGET_MS:.0f} ms target"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
