"""`probe` and `keyframes`: what a clip is, and which frames to pin."""

from __future__ import annotations

import json
from pathlib import Path

from sparkvsr.cli.arguments import add_keyframe_selection, chosen_keyframes, sub


def add_probe(commands, name: str) -> None:
    p = sub(commands, name, "Describe a video: frames, real fps, size, audio, I-frames.")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def run_probe(args) -> int:
    from sparkvsr.media import probe

    info = probe(args.file)
    summary = info.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    rate = f"{info.fps:.3f} fps" + (" (variable frame rate)" if info.vfr else "")
    print(f"{info.path}")
    print(f"  video   {info.codec} {info.pix_fmt}, {info.width}x{info.height}, {rate}")
    print(f"  frames  {info.num_frames} ({info.duration:.3f} s), rotation {info.rotation}")
    print(f"  I-frames {len(info.iframes)}: {_short_list(info.iframes)}")
    summary_colour = summary["colour"]
    print(
        f"  shape   SAR {summary['sar']}, DAR {summary['dar']}, {info.field_order}"
        + (" (interlaced)" if info.interlaced else "")
        + (", alpha" if info.alpha else "")
    )
    print(
        f"  colour  {summary_colour['matrix']} {summary_colour['range']}, primaries "
        f"{summary_colour['primaries']}, transfer {summary_colour['transfer']}, "
        f"{summary_colour['bit_depth']}-bit"
        + (f", HDR {info.colour.hdr.upper()}" if info.colour.hdr else "")
    )
    for stream in info.streams:
        extra = ""
        audio = next((a for a in info.audio if a.index == stream.index), None)
        if audio is not None:
            extra = f" {audio.sample_rate} Hz {audio.layout or f'x{audio.channels}'}"
        tags = ", ".join(t for t in (stream.language, stream.title, *stream.disposition) if t)
        start = f", starts {stream.start:+.3f} s" if stream.start is not None else ""
        print(
            f"  {stream.kind:<7} #{stream.index} {stream.codec}{extra}{f' ({tags})' if tags else ''}{start}"
        )
    print(f"  video starts {info.start:+.3f} s")
    return 0


def _short_list(values, limit: int = 20) -> str:
    shown = ", ".join(str(v) for v in list(values)[:limit])
    return shown + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")


def add_keyframes(commands, name: str) -> None:
    p = sub(commands, name, "Pick keyframes for a clip (at least 4 frames apart).")
    p.add_argument("file", type=Path)
    add_keyframe_selection(p, default_mode="iframes")
    p.add_argument("--json", action="store_true", help="print a JSON list")


def run_keyframes(args) -> int:
    from sparkvsr.media import probe

    info = probe(args.file)
    indices = chosen_keyframes(args, info)
    print(json.dumps(list(indices)) if args.json else " ".join(str(i) for i in indices))
    return 0
