"""Render jobs: a render's steps, its progress queue and its cancel flag."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from sparkvsr.render import RenderProgress


@dataclass(eq=False)
class RenderJob:
    steps: Iterator[RenderProgress]
    updates: queue.Queue
    cancel: threading.Event
    last: RenderProgress | None = None


DONE = object()


def drain(job: RenderJob) -> Iterator[RenderProgress]:
    while True:
        item = job.updates.get()
        if item is DONE:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
