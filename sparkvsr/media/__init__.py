"""Video and image I/O: probe, streaming decode by index, streaming encode that keeps the source.

The only package (with ``project``) that touches media files. Frames are RGB ``uint8`` arrays
shaped ``[N, H, W, 3]`` (a single image is ``[H, W, 3]``), always as displayed: rotation applied,
colours decoded with the source's matrix and range, interlaced sources deinterlaced.

One concept per module:
- ``probing``: ``probe`` -> ``ClipInfo`` (true frame count and rate, I-frames, aspect, field
  order, colour, every stream with its language and start)
- ``reader``: ``Clip`` / ``open_clip``, frames on demand by display index
- ``writer``: ``VideoWriter``, streaming encode; ``VideoWriter.like`` keeps a source's timing,
  sync, aspect, colour and tracks
- ``timing``: true rates, VFR detection, output timestamps (pure)
- ``colour``: colour descriptions and the conversions that honour them
- ``tracks``: audio / subtitle streams and the copy / re-encode / drop table per container
- ``guards``: output checks before any work (not the source, writable, space, codec levels)
- ``images``: still images
- ``proxy``: a clip's small player copy and filmstrip for the studio
"""

from sparkvsr.media.colour import ColourInfo, OutputColour
from sparkvsr.media.guards import (
    check_encodable,
    check_not_source,
    check_output,
    check_writable,
    estimate_bytes,
)
from sparkvsr.media.images import IMAGE_SUFFIXES, PngSequenceZip, read_image, write_image
from sparkvsr.media.probing import ClipInfo, probe
from sparkvsr.media.reader import Clip, open_clip
from sparkvsr.media.timing import FOLDER_FPS, OutputTiming
from sparkvsr.media.tracks import AudioInfo, StreamInfo
from sparkvsr.media.writer import CODECS, MP4_LIKE, VIDEO_SUFFIXES, VideoWriter, even_size

__all__ = [
    "CODECS",
    "FOLDER_FPS",
    "IMAGE_SUFFIXES",
    "MP4_LIKE",
    "VIDEO_SUFFIXES",
    "AudioInfo",
    "Clip",
    "ClipInfo",
    "ColourInfo",
    "OutputColour",
    "OutputTiming",
    "PngSequenceZip",
    "StreamInfo",
    "VideoWriter",
    "check_encodable",
    "check_not_source",
    "check_output",
    "check_writable",
    "estimate_bytes",
    "even_size",
    "open_clip",
    "probe",
    "read_image",
    "write_image",
]
