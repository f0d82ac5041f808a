"""Keyboard scrubbing: left/right step one frame, with shift ten. Passed to ``launch(js=...)``.

The snippet moves ``#scrubber``'s range input and fires the same ``input`` event a drag fires,
so Gradio runs the scrubber's own ``.input`` listener: one code path for mouse and keyboard.
When the keys rest for ``RELEASE_MS`` it fires ``pointerup`` too, as a mouse release would, so
the full-quality preview follows. Keys typed into text fields, and arrows on other sliders,
are left alone.
"""

from __future__ import annotations

SCRUB_KEYS_JS = """
() => {
  if (window.__sparkvsrKeys) return;
  window.__sparkvsrKeys = true;
  let releaseTimer = null;
  document.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    const onScrubber = target && target.closest && target.closest("#scrubber");
    if (target && !onScrubber && (target.isContentEditable ||
        ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
    const range = document.querySelector("#scrubber input[type=range]");
    if (!range || range.disabled) return;
    event.preventDefault();
    const step = (event.shiftKey ? 10 : 1) * (event.key === "ArrowLeft" ? -1 : 1);
    const now = Number(range.value);
    const next = Math.min(Number(range.max), Math.max(Number(range.min), now + step));
    if (next === now) return;
    range.value = String(next);
    range.dispatchEvent(new Event("input", { bubbles: true }));
    clearTimeout(releaseTimer);
    releaseTimer = setTimeout(
      () => range.dispatchEvent(new PointerEvent("pointerup", { bubbles: true })), 350);
  });
}
"""
