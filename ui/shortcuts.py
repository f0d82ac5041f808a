"""One source of truth for the frame and the guidance, and the viewer's keyboard shortcuts.

Everything that moves the frame or the guidance goes through the sliders' own events, as a
mouse drag does: ``input`` (the cheap path: the input frame, the live preview) and, once the
hand rests, ``pointerup`` (the slider's ``release``: the full-quality preview, and for the
guidance, saving it into the project). So typing a number + Enter, arrow keys on the guidance
slider, clicks on the timeline and shortcuts all end in the same state as a drag.

``SHORTCUTS`` is the table the help popover shows; ``SHORTCUTS_JS`` is passed to
``launch(js=...)`` beside ``ui.keyboard``'s arrow-key scrubbing (left/right, shift x10).
"""

from __future__ import annotations

from html import escape

SHORTCUTS = (
    ("← / →", "previous / next frame (Shift: 10 frames)"),
    ("J / L", "back / forward 10 frames"),
    ("Space", "play / pause the clip (pausing goes to that frame)"),
    ("K", "stop (keeps the frame)"),
    ("Home / End", "first / last frame"),
    ("M", "pin or unpin the current frame"),
    ("I / O", "in / out point at the current frame (the range to preview-render)"),
    ("C", "compare: preview, before / after wipe, side by side in turn"),
    ("1", "zoom 100 % (again: fit)"),
    ("Enter", "in a number box: go to that frame / guidance"),
    ("?", "show or hide this list"),
)
"""(keys, what they do): the help popover's rows."""


def shortcuts_help_html() -> str:
    """The help popover: a ``<details>`` listing ``SHORTCUTS``."""
    rows = "".join(
        f"<tr><td><kbd>{escape(keys)}</kbd></td><td>{escape(what)}</td></tr>"
        for keys, what in SHORTCUTS
    )
    return (
        '<details id="shortcut-help-box"><summary>Keyboard shortcuts (?)</summary>'
        f"<table>{rows}</table></details>"
    )


SHORTCUTS_JS = """
() => {
  if (window.__sparkvsrShortcuts) return;
  window.__sparkvsrShortcuts = true;
  const timers = {};
  const range = (id) => document.querySelector(`#${id} input[type=range]`);
  // move a slider as a drag would: input now, the release once the keys rest
  const commit = (id, value, restMs) => {
    const r = range(id);
    if (!r || r.disabled) return;
    const next = Math.min(Number(r.max), Math.max(Number(r.min), value));
    const moved = String(next) !== r.value;
    if (moved) {
      r.value = String(next);
      r.dispatchEvent(new Event("input", { bubbles: true }));
    }
    // a hand releases after it moved: the release reads the slider's settled value
    clearTimeout(timers[id]);
    timers[id] = setTimeout(
      () => r.dispatchEvent(new PointerEvent("pointerup", { bubbles: true })),
      moved ? Math.max(restMs, 150) : restMs);
  };
  window.__sparkvsrGoTo = (frame) => commit("scrubber", frame, 0);
  // keys typed into a text or number field stay there (a radio or a button does not type)
  const typing = (t) => t && (t.isContentEditable || ["TEXTAREA", "SELECT"].includes(t.tagName) ||
    (t.tagName === "INPUT" && !["radio", "checkbox", "button", "range"].includes(t.type)));
  const click = (selector) => { const e = document.querySelector(selector); if (e) e.click(); };

  // the timeline: a marker (or any point of the strip) jumps there
  document.addEventListener("click", (event) => {
    const track = event.target.closest && event.target.closest("#timeline .tl-track");
    if (!track) return;
    const marker = event.target.closest("[data-frame]");
    const r = range("scrubber");
    if (!r) return;
    let frame = marker ? Number(marker.dataset.frame) : null;
    if (frame === null) {
      const box = track.getBoundingClientRect();
      frame = Math.round((event.clientX - box.left) / box.width * Number(r.max));
    }
    commit("scrubber", frame, 0);
  }, true);

  // Play / pause the LR clip's proxy over the viewer, from the playhead; pausing (or the end)
  // moves the studio to the frame it stopped at, as if scrubbed there.
  const fps = () => Number(document.querySelector("#timeline .timeline")?.dataset.fps) || 25;
  const player = () => document.querySelector("#lr-player video");
  const playing = (on) => document.querySelector("#preview-column")?.classList.toggle("playing", on);
  const follow = (video) => {
    if (video.__sparkvsrFollowed) return;
    video.__sparkvsrFollowed = true;
    video.addEventListener("pause", () => {
      playing(false);
      commit("scrubber", Math.floor(video.currentTime * fps() + 1e-3), 0);
    });
    const tick = () => {  // the playhead follows the picture
      if (video.paused) return;
      const r = range("scrubber");
      const head = document.querySelector("#timeline .tl-playhead");
      if (r && head) {
        const frame = Math.min(Number(r.max), Math.floor(video.currentTime * fps()));
        head.style.left = `${100 * frame / Math.max(1, Number(r.max))}%`;
      }
      requestAnimationFrame(tick);
    };
    video.addEventListener("play", () => requestAnimationFrame(tick));
  };
  const togglePlay = () => {
    const video = player();
    if (!video) return;
    follow(video);
    if (!video.paused) { video.pause(); return; }
    const r = range("scrubber");
    const at = r ? Number(r.value) : 0;
    const last = r ? Number(r.max) : 0;
    video.currentTime = ((at >= last ? 0 : at) + 0.5) / fps();  // the middle of the frame
    playing(true);
    video.play().catch(() => playing(false));
  };

  document.addEventListener("keydown", (event) => {
    const t = event.target;
    // Enter in a number box (the frame, the guidance): go there, as a release would
    if (event.key === "Enter" && t && t.tagName === "INPUT" && t.type === "number") {
      const slider = t.closest("#scrubber, #guidance");
      if (!slider) return;
      event.preventDefault();
      commit(slider.id, Number(t.value), 0);
      return;
    }
    // the guidance slider moved by keys: the full-quality preview (and the save) follows
    if (t && t.type === "range" && t.closest && t.closest("#guidance")) {
      if (!["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "PageUp", "PageDown",
            "Home", "End"].includes(event.key)) return;
      clearTimeout(timers.guidance);
      timers.guidance = setTimeout(
        () => t.dispatchEvent(new PointerEvent("pointerup", { bubbles: true })), 350);
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey || typing(t)) return;
    const r = range("scrubber");
    const now = r ? Number(r.value) : 0;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const actions = {
      j: () => commit("scrubber", now - 10, 350),
      l: () => commit("scrubber", now + 10, 350),
      " ": togglePlay,
      k: () => { const video = player(); if (video && !video.paused) video.pause();
                 clearTimeout(timers.scrubber);
                 if (r) r.dispatchEvent(new PointerEvent("pointerup", { bubbles: true })); },
      Home: () => commit("scrubber", 0, 0),
      End: () => commit("scrubber", r ? Number(r.max) : 0, 0),
      m: () => click("#pin"),
      i: () => click("#mark-in"),
      o: () => click("#mark-out"),
      // compare modes in turn: preview, before/after wipe, side by side (the first three tabs)
      c: () => {
        const tabs = [...document.querySelectorAll("#viewer-tabs [role=tab]")].slice(0, 3);
        const at = tabs.findIndex((b) => b.getAttribute("aria-selected") === "true");
        const next = tabs[(at + 1) % tabs.length];
        if (next) next.click();
      },
      "1": () => {
        const labels = [...document.querySelectorAll("#zoom label")];
        const hundred = labels.find((l) => l.innerText.trim() === "100%");
        const fit = labels.find((l) => l.innerText.trim() === "Fit");
        const on = hundred && hundred.querySelector("input") && hundred.querySelector("input").checked;
        (on ? fit : hundred)?.click();
        if (document.activeElement) document.activeElement.blur();
      },
      "?": () => { const d = document.querySelector("#shortcut-help-box");
                   if (d) d.open = !d.open; },
    };
    const action = actions[key];
    if (!action) return;
    event.preventDefault();
    action();
  });
}
"""
