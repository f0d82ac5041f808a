"""One writer per project, across processes: an exclusive advisory lock on the project folder.

The lock is ``flock`` on ``<project>/.lock``, held for the life of an open project or render (CLI
``restore --project``, batch, the worker and the studio through it). The file also names its
holder (pid, host, what it is doing, since when) so a refusal can say who has the project. The
kernel releases a flock when its process dies, even by ``kill -9``, so a crashed holder never
leaves the project locked: the next opener finds the old holder's note, takes the lock, and says
it took over a stale lock.

Within one process a folder can be locked once: a second ``acquire`` of the same folder is
refused like one from another process (the worker shares one open project between its sessions).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from sparkvsr.errors import ProjectError

LOCK_FILE = ".lock"


class ProjectLocked(ProjectError):
    """The project is open for writing elsewhere (another process, or another part of this one)."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a project: written into the lock file by the holder."""

    pid: int
    host: str
    purpose: str
    since: float  # seconds since the epoch

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"{self.purpose} (pid {self.pid} on {self.host}, since {started})"


class ProjectLock:
    """An exclusive lock on one project folder; release it with ``release()`` or ``with``.

    ``stale``: the note left by a holder that died without releasing (None if there was none).
    """

    _held: ClassVar[set[Path]] = set()  # folders this process holds: a second acquire is refused
    _held_lock: ClassVar[threading.RLock] = threading.RLock()

    def __init__(self, folder: Path, handle: int, holder: LockHolder, stale: LockHolder | None):
        self.folder = folder
        self.holder = holder
        self.stale = stale
        self._fd: int | None = handle

    @classmethod
    def acquire(cls, folder: str | os.PathLike, purpose: str, *, wait: float = 0.0) -> ProjectLock:
        """Lock ``folder`` (created if missing) for ``purpose`` ("restore (CLI)", "worker"...).

        wait: seconds to keep trying while another holder has it (0: refuse at once).
        Raises ProjectLocked naming the holder, or ProjectError when the file cannot be made.
        """
        folder = Path(folder).absolute()
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                return cls._try(folder, purpose)
            except ProjectLocked:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(0.2, max(0.01, deadline - time.monotonic())))

    @classmethod
    def _try(cls, folder: Path, purpose: str) -> ProjectLock:
        with cls._held_lock:
            if folder in cls._held:
                holder = read_holder(folder)
                raise ProjectLocked(_in_use(folder, holder, same_process=True))
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise ProjectError(f"cannot create the lock file in {folder}: {e}") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ProjectLocked(_in_use(folder, read_holder(folder))) from None
            except OSError as e:
                os.close(fd)
                raise ProjectError(f"cannot lock {folder}: {e}") from e
            # Locked. A note still in the file was left by a holder that died (kill -9, crash).
            stale = read_holder(folder)
            holder = LockHolder(os.getpid(), socket.gethostname(), purpose, time.time())
            note = json.dumps(asdict(holder)).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, note, 0)
            cls._held.add(folder)
            return cls(folder, fd, holder, stale)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Clear the holder note and unlock (idempotent)."""
        with self._held_lock:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # an empty note: released cleanly, not stale
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._held.discard(self.folder)

    def __enter__(self) -> ProjectLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()


def read_holder(folder: str | os.PathLike) -> LockHolder | None:
    """The holder note in ``folder``'s lock file (None: no note, or unreadable)."""
    try:
        data = json.loads((Path(folder) / LOCK_FILE).read_text(encoding="utf-8") or "null")
        return LockHolder(int(data["pid"]), str(data["host"]), str(data["purpose"]), data["since"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _in_use(folder: Path, holder: LockHolder | None, *, same_process: bool = False) -> str:
    who = holder.describe() if holder else "another process"
    where = " in this process" if same_process else ""
    return (
        f"project {folder} is in use by {who}{where}; close it there (or wait for its render to "
        "finish) and try again"
    )
