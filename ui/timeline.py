"""The timeline strip under the scrubber and the frame label: pure functions, HTML out.

Positions are percentages of the clip so the strip lines up with the slider at any width: frame
``i`` of ``n`` sits at ``100 * i / (n - 1)`` percent, like the slider's thumb.
"""

from __future__ import annotations

from collections.abc import Iterable


def frame_time(index: int, fps: float) -> str:
    """``index`` at ``fps`` as ``m:ss.mmm`` (frame 0 is 0:00.000)."""
    seconds = index / fps if fps > 0 else 0.0
    minutes, rest = divmod(seconds, 60.0)
    return f"{int(minutes)}:{rest:06.3f}"


def frame_label(index: int, num_frames: int, fps: float) -> str:
    """The HTML of ``#frame-index``; its text reads ``Frame 12 / 59 · 0:00.500``."""
    return (
        f'<span class="frame-no">Frame {index} / {max(0, num_frames - 1)}</span>'
        f'<span class="frame-sep"> · </span><span class="frame-time">{frame_time(index, fps)}</span>'
    )


def _position(index: int, num_frames: int) -> float:
    return 100.0 * index / max(1, num_frames - 1)


def timeline_html(
    num_frames: int,
    current: int,
    iframes: Iterable[int] = (),
    keyframes: Iterable[int] = (),
    with_reference: Iterable[int] = (),
    in_point: int | None = None,
    out_point: int | None = None,
    fps: float = 0.0,
) -> str:
    """The strip: I-frame ticks, keyframe pins (filled once they have a Reference), in and out
    marks with the span between them, playhead.

    Every marker carries ``data-frame`` so tests and users' scripts can read the timeline; the
    strip carries the clip's ``data-frames`` and ``data-fps`` (the player maps time to frames).
    """
    done = set(with_reference)
    marks = []
    if in_point is not None or out_point is not None:
        first = 0 if in_point is None else in_point
        final = max(0, num_frames - 1) if out_point is None else out_point
        left, right = _position(first, num_frames), _position(final, num_frames)
        marks.append(
            f'<i class="tl-range" style="left:{left:.3f}%;width:{max(0.0, right - left):.3f}%"'
            f' title="range {first}-{final}"></i>'
        )
    for kind, frame in (("tl-in", in_point), ("tl-out", out_point)):
        if frame is not None:
            marks.append(
                f'<i class="{kind}" data-frame="{frame}" '
                f'style="left:{_position(frame, num_frames):.3f}%" '
                f'title="{kind[3:]} point {frame}"></i>'
            )
    marks += [
        f'<i class="tl-iframe" data-frame="{i}" style="left:{_position(i, num_frames):.3f}%" '
        f'title="I-frame {i}"></i>'
        for i in iframes
    ]
    for k in keyframes:
        kind = "tl-key has-ref" if k in done else "tl-key"
        state = "reference ready" if k in done else "no reference yet"
        marks.append(
            f'<i class="{kind}" data-frame="{k}" style="left:{_position(k, num_frames):.3f}%" '
            f'title="keyframe {k}: {state}"></i>'
        )
    marks.append(
        f'<i class="tl-playhead" data-frame="{current}" '
        f'style="left:{_position(current, num_frames):.3f}%"></i>'
    )
    legend = (
        '<div class="tl-legend"><span><i class="tl-iframe"></i>I-frame</span>'
        '<span><i class="tl-key"></i>keyframe</span>'
        '<span><i class="tl-key has-ref"></i>with reference</span></div>'
    )
    return (
        f'<div class="timeline" data-frames="{num_frames}" data-fps="{fps:.6g}">'
        f'<div class="tl-track">{"".join(marks)}</div>{legend}</div>'
    )


def keyframe_caption(frame: int, editor: str | None) -> str:
    """Gallery caption: the frame and where its Reference came from (or that it has none)."""
    return f"frame {frame} · {editor}" if editor else f"frame {frame} · no reference"
