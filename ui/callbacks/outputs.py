"""The output panel (size, codec, quality, audio, colour correction, estimate) and the
result it leads to: the last render, done or out of date, and its download.
"""

import logging
import time
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from sparkvsr.engines.base import RestoreOptions
from sparkvsr.estimate import SAMPLE_FRAMES, OutputEstimate, estimate_output, source_audio_bytes
from sparkvsr.render import render_chunk
from sparkvsr.worker import (
    FileRequest,
    PreviewRequest,
    SettingsRequest,
    StatusRequest,
)
from ui import output as output_panel
from ui.callbacks.base import (
    NoClip,
    StudioBase,
    _require,
    _skip,
)
from ui.callbacks.rendering import DOWNLOAD_LABEL, progress_html
from ui.messages import error_html, notice_html
from ui.state import StudioState

log = logging.getLogger("sparkvsr.ui")


class OutputHandlers(StudioBase):
    """The output settings and the result of the last render."""

    def _result_view(self, state: StudioState) -> tuple[str, str | None, Any]:
        """(progress panel, result video, download button) for the project's last complete
        render: "Done" when it matches the current settings, "out of date" when not."""
        info = self.client.update_settings(SettingsRequest(state.session_id))  # reads only
        if not info.result:
            return progress_html(None), None, gr.DownloadButton(value=None, interactive=False)
        path = self.client.get_file(FileRequest(state.session_id, info.result)).local_path
        # current: the same frames (fingerprint) and the same encoding (the name says it)
        wanted = self._output_name(state.with_settings(info), info.guidance)
        current = info.result_current and Path(info.result).name == wanted
        label = DOWNLOAD_LABEL if current else f"{DOWNLOAD_LABEL} (out of date)"
        button = gr.DownloadButton(label=label, value=path, interactive=True)
        return result_html(Path(info.result).name, current), output_panel.playable(path), button

    def _output_name(self, state: StudioState, guidance: float) -> str:
        if self._engine_name is None:
            self._engine_name = self.client.status(StatusRequest()).engine.name
        return output_panel.output_name(
            state.clip.path,
            state.render_size,
            (state.clip.width, state.clip.height),
            self._engine_name,
            float(guidance),
            state.output,
        )

    # Output panel ---------------------------------------------------------------------------
    def output_values(self, state: StudioState | None) -> tuple[Any, ...]:
        """The output panel as the project has it. Outputs: scale, custom width, codec, crf,
        preset, 10-bit, audio, output note."""
        if state is None:
            return _skip(8)
        clip_size = (state.clip.width, state.clip.height)
        choice, width = output_panel.scale_choice(state.render_size, clip_size)
        out = state.output
        return (
            choice,
            width,
            output_panel.CODEC_LABELS[out.codec],
            out.crf,
            out.preset,
            out.ten_bit,
            out.audio,
            output_note(state),
        )

    def set_output(
        self,
        state: StudioState | None,
        scale: str,
        custom_width: float | None,
        codec: str,
        crf: float,
        preset: str,
        ten_bit: bool,
        audio: bool,
    ) -> tuple[Any, ...]:
        """An output-panel control changed: save the output settings into the project (a
        running render keeps the ones it started with). Outputs: state, output note, error."""
        try:
            state = _require(state)
            size = output_panel.size_for(scale, custom_width, (state.clip.width, state.clip.height))
            value = output_panel.CODECS.get(codec, codec)
            crf_codec = value in output_panel.CRF_CODECS
            info = self.client.update_settings(
                SettingsRequest(
                    state.session_id,
                    output_size=size,
                    codec=value,
                    crf=int(crf) if crf_codec else None,
                    preset=preset if crf_codec else None,
                    ten_bit=bool(ten_bit) and crf_codec,
                    audio=bool(audio),
                )
            )
        except ValueError as e:
            return gr.skip(), gr.skip(), error_html(NoClip(str(e)), "changing the output")
        except Exception as e:
            return gr.skip(), gr.skip(), error_html(e, "changing the output")
        state = state.with_settings(info)
        return state, output_note(state), ""

    def result_status(self, state: StudioState | None) -> tuple[Any, ...]:
        """After a change: the result is marked out of date if the change needs a re-render
        (left alone while a render of this page runs). Outputs: progress, download button."""
        if state is None:
            return _skip(2)
        if self._rendering(state):
            return _skip(2)
        try:
            progress, _, download = self._result_view(state)
        except Exception as e:  # the status line is a courtesy: never an error panel
            log.info("result status unavailable: %s", e)
            return _skip(2)
        return progress, download

    def estimate(
        self,
        state: StudioState | None,
        guidance: float,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for progress)
    ) -> str:
        """``#estimate``: output size, time and memory of a render with the current settings,
        from a real sample: a few consecutive restored frames from the middle of the clip,
        encoded with the chosen codec. Outputs: the estimate line."""
        try:
            state = _require(state)
            total = state.clip.num_frames
            count = min(SAMPLE_FRAMES, total)
            first = max(0, total // 2 - count // 2)
            frames, seconds = [], []
            for n, index in enumerate(range(first, first + count)):
                progress(n / (count + 1), desc=f"restoring sample frame {index}")
                started = time.monotonic()
                request = PreviewRequest(state.session_id, index, float(guidance))
                frames.append(self.client.preview(request).image)
                seconds.append(time.monotonic() - started)
            progress(count / (count + 1), desc="encoding the sample")
            sample = np.stack(frames)
            if self._engine_name is None:
                self._engine_name = self.client.status(StatusRequest()).engine.name
            # the chunks the render will use: the engine's chunk form (8k+1 for dit) included
            chunk = render_chunk(self._engine_name, RestoreOptions(), state.render_size)
            result = estimate_output(
                sample,
                state.clip.fps,
                total,
                state.output,
                seconds_per_frame=float(np.median(seconds[1:] or seconds)),
                audio_bytes=source_audio_bytes(state.clip.path) if state.clip.has_audio else 0,
                chunk_frames=chunk.chunk,
            )
        except Exception as e:
            return f"Estimate unavailable: {escape(str(e))}"
        return estimate_markdown(result)

    def set_color_fix(self, state: StudioState | None, color_fix: str) -> str:
        """``#color-fix`` changed: save it into the project. During a render the render keeps
        the setting it started with, and the page says the change is for the next one.
        Outputs: error."""
        try:
            state = _require(state)
            self.client.update_settings(SettingsRequest(state.session_id, color_fix=color_fix))
        except Exception as e:
            return error_html(e, "changing the colour correction")
        if self._rendering(state):
            return notice_html(
                f"Colour correction {color_fix} is saved; the render now running keeps the "
                "setting it started with, so the next render uses it."
            )
        return ""

    def color_fix_applies(self) -> bool:
        """Whether this worker's engine has a colour correction to choose (the flow engine
        ties colour to the input itself, by back-projection: the menu is hidden there)."""
        try:
            return self.client.status(StatusRequest()).engine.name != "flow"
        except Exception:
            return True


def estimate_markdown(estimate: OutputEstimate) -> str:
    """The ``#output-estimate`` line: size, time, memory."""
    return (
        f"**Estimate** ≈ {_size_text(estimate.bytes)} · ≈ {_time_text(estimate.seconds)} · "
        f"render buffers ≈ {_size_text(estimate.memory)}"
    )


def _size_text(count: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} B"


def _time_text(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{max(1, round(seconds))} s"


def output_note(state: StudioState) -> str:
    """The line under the output panel: what the render will write."""
    width, height = state.render_size
    out = state.output
    codec = output_panel.CODEC_LABELS.get(out.codec, out.codec)
    bits = []
    if out.codec in output_panel.CRF_CODECS:
        bits.append(f"CRF {out.crf}, {out.preset}{', 10-bit' if out.ten_bit else ''}")
    if out.codec == "png":
        bits.append("one .zip of PNG frames, lossless; no audio")
    else:
        bits.append("with audio" if out.audio and state.clip.has_audio else "no audio")
    return f"Renders {width}×{height} {codec} ({'; '.join(bits)})."


def result_html(name: str, current: bool) -> str:
    """The ``#progress`` panel for a finished render: done, or out of date."""
    if current:
        text, stage = f"Done · {name} is below", "done"
    else:
        text = (
            f"Out of date · {name} was rendered before the latest changes to keyframes, "
            "references or settings; render again to update it"
        )
        stage = "stale"
    return (
        f'<div class="progress" data-stage="{stage}"><div class="bar"><span style="width:'
        f'{100 if current else 0}%"></span></div><div class="progress-text">{escape(text)}'
        "</div></div>"
    )
