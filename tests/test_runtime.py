"""Process-wide settings applied by the entry points before OpenCV loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sparkvsr.runtime import OPENCV_POOL, configure_process

ROOT = Path(__file__).resolve().parents[1]


def test_configure_process_sets_the_pool_defaults_and_keeps_a_users_own_values():
    environ = {"OPENCV_THREAD_POOL_ACTIVE_WAIT_MAIN": "10000", "HOME": "/home/me"}
    configure_process(environ)
    assert environ["OPENCV_THREAD_POOL_ACTIVE_WAIT_WORKER"] == "0"
    assert environ["OPENCV_THREAD_POOL_ACTIVE_WAIT_MAIN"] == "10000"  # the user's choice
    assert environ["HOME"] == "/home/me"
    assert set(OPENCV_POOL) <= set(environ)


def test_the_command_line_configures_the_process_before_opencv_loads():
    # OpenCV reads the variables once, when it loads: the settings module must not load it,
    # and `python -m sparkvsr` must have set them by the time its CLI imports anything
    code = (
        "import os, sys\n"
        "import sparkvsr.runtime\n"
        "assert 'cv2' not in sys.modules, 'sparkvsr.runtime loaded cv2'\n"
        "import sparkvsr.__main__\n"
        "import cv2\n"
        "print(os.environ['OPENCV_THREAD_POOL_ACTIVE_WAIT_WORKER'],"
        " os.environ['OPENCV_THREAD_POOL_ACTIVE_WAIT_MAIN'])\n"
    )
    environ = {k: v for k, v in os.environ.items() if k not in OPENCV_POOL}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "0"]
