"""The render loop shared by the CLI, the worker and batch.

With a project (``render_steps`` / ``render_project``)::

    1. check the project (clip present, references readable) and open the clip
    2. fingerprint the render settings; keep finished chunks made with the same settings
    3. engine.restore(...) from the first unfinished frame; save each chunk losslessly
    4. assemble the saved chunks into the final H.264 clip (source fps, audio copied)
    5. mark the render complete in the project

A render killed at any point resumes at step 3 from the last saved chunk, and because chunks are
stored losslessly the resumed output equals an uninterrupted one frame for frame. Without a
project (``render_clip``) the engine's chunks stream straight into the writer.

A range render (``render_range_steps``: frames ``start <= i < stop``, a short preview before the
full clip) runs the same steps on the range: frames finished already with the same settings are
read, the engine restores only the rest (its frames equal the full render's: the engine plans
the whole clip), and the range is encoded with the clip's timing and the audio of that span.
The full render of the same settings adopts the range's chunks instead of rendering them again.

Progress arrives as ``RenderProgress`` (frames done of total, which stage, frames encoded in the
final encode, elapsed time and the time left at the recent pace); ``cancel`` is a callable the
engine checks between chunks, raising ``Cancelled`` (finished chunks are kept).

Modules: ``progress`` (RenderProgress, Pace, RenderResult), ``settings`` (fingerprint, output
and working size, chunk length, writer options), ``steps`` (the resumable project render),
``ranges`` (range renders), ``assembly`` (the final encode), ``clip`` (without a project).
"""

from sparkvsr.render.assembly import ASSEMBLE_BLOCK, ASSEMBLE_BYTES
from sparkvsr.render.clip import render_clip
from sparkvsr.render.progress import Pace, ProgressCallback, RenderProgress, RenderResult
from sparkvsr.render.ranges import range_name, render_range_steps
from sparkvsr.render.settings import (
    CHUNK_FORM,
    DETERMINISTIC_X264,
    RENDER_CHUNK_BYTES,
    bounded_options,
    chunk_within,
    output_size,
    render_chunk,
    render_fingerprint,
    working_scale,
    writer_options,
)
from sparkvsr.render.steps import (
    RenderSnapshot,
    ensure_project,
    render_project,
    render_steps,
    take_snapshot,
)

_bounded_options = bounded_options  # its name before the split (tests import it)

__all__ = [
    "ASSEMBLE_BLOCK",
    "ASSEMBLE_BYTES",
    "CHUNK_FORM",
    "DETERMINISTIC_X264",
    "RENDER_CHUNK_BYTES",
    "Pace",
    "ProgressCallback",
    "RenderProgress",
    "RenderResult",
    "RenderSnapshot",
    "bounded_options",
    "chunk_within",
    "ensure_project",
    "output_size",
    "range_name",
    "render_chunk",
    "render_clip",
    "render_fingerprint",
    "render_project",
    "render_range_steps",
    "render_steps",
    "take_snapshot",
    "working_scale",
    "writer_options",
]
