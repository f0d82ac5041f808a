"""Errors a user can act on.

Every message names the bad value (a file, a frame index, an option) and says what to do. The CLI
and the UI print ``str(error)`` only, never a traceback. Wrap library failures with
``raise SomeError(...) from e`` so the cause stays available for debugging.
"""


class SparkVSRError(Exception):
    """Base class: anything with a message meant for the user."""


class MediaError(SparkVSRError):
    """A video or image file cannot be read or written (missing, corrupt, unsupported...)."""


class KeyframeError(SparkVSRError):
    """A keyframe set breaks the rules (outside the clip, closer than 4 frames...)."""


class EditorError(SparkVSRError):
    """An editor could not make a Reference (no API key, quota, safety block, bad upload...)."""


class EngineError(SparkVSRError):
    """An engine cannot run as asked (bad options, missing weights, incompatible references)."""


class ProjectError(SparkVSRError):
    """A project folder cannot be opened or saved (corrupt manifest, newer version, disk full)."""


class ClipMissing(ProjectError):
    """A project's clip file is not where the project recorded it (moved, renamed, deleted):
    relink the project to the clip's new location; the project itself is intact."""


class EvaluationError(SparkVSRError):
    """An evaluation cannot run as asked (mismatched clips, unknown metric, missing clip...)."""


class Cancelled(SparkVSRError):
    """A job stopped because the user pressed cancel; work finished before that is kept."""
