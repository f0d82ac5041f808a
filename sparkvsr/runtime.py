"""Process-wide settings that the entry points (the CLI, ``app.py``, the benchmarks) apply first.

Importing this module changes nothing; ``configure_process`` does, and it has to run before
anything imports ``cv2``: OpenCV reads these variables once, when it loads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import MutableMapping

# OpenCV's thread pool: by default its workers and the thread that started a parallel job
# spin-wait between jobs. Beside a video encoder on a small machine the spinning takes the
# encoder's cores: restoring the 100-frame flow benchmark clip (decode, flow engine, H.264
# encode on 2 cores) took 8% more CPU and 7% more time with it (medians of 8 interleaved pairs,
# benchmarks/flow_speed.py --job runs). Without it, a sleeping worker is woken for each job.
OPENCV_POOL = {
    "OPENCV_THREAD_POOL_ACTIVE_WAIT_WORKER": "0",
    "OPENCV_THREAD_POOL_ACTIVE_WAIT_MAIN": "0",
}


def configure_process(environ: MutableMapping[str, str] | None = None) -> None:
    """Set the defaults above in ``environ`` (``os.environ`` by default); values already set win,
    so a user can still choose OpenCV's spinning by setting the variable themselves."""
    environ = os.environ if environ is None else environ
    for name, value in OPENCV_POOL.items():
        environ.setdefault(name, value)
    if environ is os.environ:
        bound_heap()


# glibc's allocator: large arrays above the mmap threshold go back to the system when freed;
# below it they stay in the heap. By default the threshold rises to the size of every freed
# mapping (up to 32 MiB), so after a few 4x previews of a 720p clip (frames of 14-44 MiB) the
# engine's per-frame buffers land in the heap and the process keeps gigabytes it no longer uses
# (measured: 1.3 GB more after one preview). A fixed threshold stops that rise; two arenas keep
# the render and preview threads from each holding their own.
MALLOC_MMAP_THRESHOLD = 4 << 20
MALLOC_ARENA_MAX = 2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def bound_heap() -> bool:
    """Apply the allocator settings above to this process (glibc only; False elsewhere).
    Values set by the user through ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_ARENA_MAX`` win."""
    name = ctypes.util.find_library("c")
    if not name or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD) == 1
    if "MALLOC_ARENA_MAX" not in os.environ:
        ok = mallopt(_M_ARENA_MAX, MALLOC_ARENA_MAX) == 1 and ok
    return ok
