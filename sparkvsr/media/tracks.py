"""The streams beside the video (audio, subtitles, data) and what an output does with each.

One table decides, per output container, which codecs are copied as they are; audio that cannot
be copied is re-encoded to AAC with its channel layout kept; subtitles go where the container can
hold them and are otherwise dropped. Every re-encode or drop is said in a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import av

# Output container -> audio codecs it carries as they are (FFmpeg decoder names).
_PCM = {
    "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_s32le", "pcm_s32be",
    "pcm_f32le", "pcm_f32be", "pcm_f64le", "pcm_u8", "pcm_alaw", "pcm_mulaw",
}  # fmt: skip
AUDIO_COPY: dict[str, frozenset[str]] = {
    ".mp4": frozenset({"aac", "mp3", "mp3float", "ac3", "eac3", "alac", "opus", "flac"}),
    ".m4v": frozenset({"aac", "mp3", "mp3float", "ac3", "eac3", "alac"}),
    ".mov": frozenset({"aac", "mp3", "mp3float", "ac3", "eac3", "alac", *_PCM}),
    ".mkv": frozenset(),  # Matroska carries every audio codec FFmpeg knows: see copies_audio
}
# Output container -> subtitle codecs it carries.
SUBTITLE_COPY: dict[str, frozenset[str]] = {
    ".mp4": frozenset({"mov_text"}),
    ".m4v": frozenset({"mov_text"}),
    ".mov": frozenset({"mov_text"}),
    ".mkv": frozenset(
        {
            "subrip",
            "srt",
            "ass",
            "ssa",
            "webvtt",
            "dvd_subtitle",
            "hdmv_pgs_subtitle",
            "dvb_subtitle",
            "text",
        }
    ),
}
REENCODE_AUDIO = "aac"


@dataclass(frozen=True)
class AudioInfo:
    """One audio stream of a clip. start: its first timestamp in seconds (None if unknown)."""

    index: int
    codec: str
    sample_rate: int
    channels: int
    duration: float
    layout: str = ""
    language: str = ""
    title: str = ""
    start: float | None = None


@dataclass(frozen=True)
class StreamInfo:
    """Any stream of a file: kind ("video", "audio", "subtitle", "data", "attachment")."""

    index: int
    kind: str
    codec: str
    language: str = ""
    title: str = ""
    disposition: tuple[str, ...] = ()
    start: float | None = None


def stream_info(stream: av.stream.Stream) -> StreamInfo:
    context = stream.codec_context
    codec = context.name if context is not None and context.codec is not None else "unknown"
    return StreamInfo(
        index=stream.index,
        kind=stream.type,
        codec=codec,
        language=_language(stream),
        title=str(stream.metadata.get("title", "")),
        disposition=_disposition(stream),
        start=_start(stream),
    )


def audio_info(stream: av.AudioStream) -> AudioInfo:
    context = stream.codec_context
    duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
    layout = context.layout.name if context.layout is not None else ""
    return AudioInfo(
        index=stream.index,
        codec=context.name,
        sample_rate=int(context.sample_rate or 0),
        channels=int(getattr(context, "channels", 0) or 0),
        duration=duration,
        layout=layout,
        language=_language(stream),
        title=str(stream.metadata.get("title", "")),
        start=_start(stream),
    )


def _language(stream: av.stream.Stream) -> str:
    language = stream.metadata.get("language", "") or ""
    return "" if language == "und" else str(language)


def _start(stream: av.stream.Stream) -> float | None:
    if stream.start_time is None or stream.time_base is None:
        return None
    return float(stream.start_time * stream.time_base)


def _disposition(stream: av.stream.Stream) -> tuple[str, ...]:
    flags = stream.disposition
    return tuple(f.name for f in type(flags) if f.value and f in flags and f.name)


@dataclass(frozen=True)
class TrackPlan:
    """What an output does with source stream ``index``: "copy", "reencode" or "drop"."""

    index: int
    kind: str
    action: str
    note: str = ""


@dataclass(frozen=True)
class TracksPlan:
    tracks: tuple[TrackPlan, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def action(self, index: int) -> str:
        return next((t.action for t in self.tracks if t.index == index), "drop")


def container_key(suffix: str, lossless: bool = False) -> str:
    return ".mkv" if lossless else suffix.lower()


def copies_audio(container: str, codec: str) -> bool:
    return container == ".mkv" or codec in AUDIO_COPY.get(container, frozenset())


def plan_tracks(
    audio: tuple[AudioInfo, ...], streams: tuple[StreamInfo, ...], container: str
) -> TracksPlan:
    """Copy, re-encode or drop each audio and subtitle stream for an output ``container``
    (".mp4", ".mov", ".m4v" or ".mkv"), with a note for everything not copied as it is."""
    tracks: list[TrackPlan] = []
    notes: list[str] = []
    for a in audio:
        name = f"audio #{a.index} ({a.codec}{', ' + a.language if a.language else ''})"
        if copies_audio(container, a.codec):
            tracks.append(TrackPlan(a.index, "audio", "copy"))
            continue
        note = (
            f"{name} cannot go into {container}: re-encoded to AAC, "
            f"{a.layout or str(a.channels) + ' channels'} kept"
            + ("; use .mkv to keep it as it is" if container != ".mkv" else "")
        )
        tracks.append(TrackPlan(a.index, "audio", "reencode", note))
        notes.append(note)
    for s in streams:
        if s.kind in ("video", "attachment"):
            what = "cover picture" if "attached_pic" in s.disposition else f"{s.kind} stream"
            note = f"{what} #{s.index} ({s.codec}) dropped: only the main video is restored"
            tracks.append(TrackPlan(s.index, s.kind, "drop", note))
            notes.append(note)
            continue
        if s.kind != "subtitle":
            continue  # data streams (timecodes, chapters' text) carry nothing to see or hear
        name = f"subtitle #{s.index} ({s.codec}{', ' + s.language if s.language else ''})"
        if s.codec in SUBTITLE_COPY.get(container, frozenset()):
            tracks.append(TrackPlan(s.index, "subtitle", "copy"))
            continue
        note = f"{name} dropped: {container} cannot carry it; write .mkv to keep subtitles"
        tracks.append(TrackPlan(s.index, "subtitle", "drop", note))
        notes.append(note)
    return TracksPlan(tuple(tracks), tuple(notes))
