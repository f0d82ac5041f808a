"""Process-wide settings that the entry points (the CLI, ``app.py``, the benchmarks) apply first.

Importing this module changes nothing; ``configure_process`` does, and it has to run before
anything imports ``cv2``: OpenCV reads these variables once, when it loads.
"""

from __future__ import annotations

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
