"""In and out points and the range preview render: which frames a range covers, and the lines
the page shows about it. Pure functions, HTML out.

In and out are frame indices both included (a video editor's marks): ``in 120, out 195`` is
frames 120 to 195, ``(start, stop) = (120, 196)`` for the worker. Without marks the range is
the ``DEFAULT_SECONDS`` around the playhead; with one mark, that long from it.
"""

from __future__ import annotations

from html import escape

DEFAULT_SECONDS = 3.0
"""The length of a range without in and out points (and from a lone mark)."""


def range_span(
    in_point: int | None,
    out_point: int | None,
    playhead: int,
    fps: float,
    num_frames: int,
    seconds: float = DEFAULT_SECONDS,
) -> tuple[int, int]:
    """``(start, stop)`` of the range to render (frames ``start <= i < stop``), inside the
    clip: the marks, or ``seconds`` around the playhead (after the in point, before the out
    point when only one is set). Always at least one frame."""
    last = max(0, num_frames - 1)
    length = max(1, round(seconds * fps)) if fps > 0 else 1
    if in_point is not None and out_point is not None:
        first, final = sorted((in_point, out_point))
    elif in_point is not None:
        first, final = in_point, in_point + length - 1
    elif out_point is not None:
        first, final = out_point - length + 1, out_point
    else:
        first = playhead - length // 2
        final = first + length - 1
        if first < 0:
            first, final = 0, length - 1
        if final > last:
            first, final = last - length + 1, last
    first = min(max(0, first), last)
    final = min(max(first, final), last)
    return first, final + 1


def marks_after(
    mark: str, frame: int, in_point: int | None, out_point: int | None
) -> tuple[int | None, int | None]:
    """The (in, out) marks after setting ``mark`` ("in" or "out") at ``frame``: setting one on
    the wrong side of the other moves the other away (a range never runs backwards)."""
    if mark == "in":
        return frame, out_point if out_point is None or out_point >= frame else None
    if mark == "out":
        return in_point if in_point is None or in_point <= frame else None, frame
    raise ValueError(f"mark {mark!r} is unknown: use 'in' or 'out'")


def range_info_html(
    in_point: int | None,
    out_point: int | None,
    span: tuple[int, int],
    fps: float,
) -> str:
    """``#range-info``: what "Render range" will render (``data-start`` / ``data-stop``)."""
    start, stop = span
    seconds = (stop - start) / fps if fps > 0 else 0.0
    if in_point is None and out_point is None:
        how = "no in/out: the 3 s around the playhead"
    else:
        marks = [f"in {in_point}" if in_point is not None else "", ""]
        marks[1] = f"out {out_point}" if out_point is not None else ""
        how = " · ".join(m for m in marks if m)
    text = f"Range {start}–{stop - 1} ({stop - start} frames, {seconds:.1f} s) · {how}"
    return f'<div class="range-info" data-start="{start}" data-stop="{stop}">{escape(text)}</div>'


def range_result_html(name: str, span: tuple[int, int], current: bool) -> str:
    """``#range-progress`` for a finished range render: ready (playing in the viewer's Range
    tab), or out of date after changes (``data-stage`` done / stale, like the full render)."""
    start, stop = span
    if current and name.lower().endswith(".zip"):
        text = f"Range {start}–{stop - 1} ready · {name} (PNG frames, in the project folder)"
        stage = "done"
    elif current:
        text, stage = f"Range {start}–{stop - 1} ready · {name} plays in the Range tab", "done"
    else:
        text = (
            f"Out of date · range {start}–{stop - 1} ({name}) was rendered before the latest "
            "changes; render the range again to update it"
        )
        stage = "stale"
    return (
        f'<div class="progress" data-stage="{stage}" data-start="{start}" data-stop="{stop}">'
        f'<div class="bar"><span style="width:{100 if current else 0}%"></span></div>'
        f'<div class="progress-text">{escape(text)}</div></div>'
    )
