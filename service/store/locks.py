"""Locks that hold across every process sharing one store root (replicas on one machine, or on a shared filesystem).

`StoreLock` serializes the store's writers: the threads of this process (a thread lock) and every other process
that opens the same lock file (`flock`; Linux NFS clients turn it into a POSIX lock held on the server).

`StagingClaim` marks an upload being staged as owned by a live process: `.staging/<id>.claim`, flocked for as long
as the upload is staged. A staging folder whose claim nobody holds was left by a process that died, so any process
may clear it at start-up without touching another replica's upload in progress.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
import uuid
import weakref
from pathlib import Path

CLAIM_SUFFIX = ".claim"


class StoreLock:
    def __init__(self, path: Path):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._threads = threading.Lock()
        weakref.finalize(self, os.close, self._fd)

    def __enter__(self) -> StoreLock:
        self._threads.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()


class StagingClaim:
    """One upload's staging folder and the flocked claim file beside it. Make it under the StoreLock (which
    `clear_abandoned` also holds), so that no process can see the folder before its claim is held."""

    def __init__(self, staging: Path):
        name = f"upload-{uuid.uuid4().hex}"
        self.folder = staging / name
        self._claim = staging / f"{name}{CLAIM_SUFFIX}"
        fd = os.open(self._claim, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else can hold it
        self.folder.mkdir()
        # Released by put/discard; an upload dropped without either releases when it is garbage-collected.
        self._release = weakref.finalize(self, _release, self._claim, fd)

    def release(self) -> None:
        """Call once the folder is gone (moved into the store or removed)."""
        self._release()


def _release(claim: Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(claim)  # before the close: a process waiting on it then finds nothing left to clear
    os.close(fd)


def clear_abandoned(staging: Path) -> list[str]:
    """Remove the staging folders (and claims) no live process holds; returns their names. Hold the StoreLock."""
    cleared = []
    with os.scandir(staging) as entries:
        names = {entry.name.removesuffix(CLAIM_SUFFIX) for entry in entries}
    for name in sorted(names):
        claim = staging / f"{name}{CLAIM_SUFFIX}"
        try:
            fd = os.open(claim, os.O_RDWR)
        except FileNotFoundError:
            fd = None  # a folder with no claim: nobody can be staging into it
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process is staging this upload
            shutil.rmtree(staging / name, ignore_errors=True)
            if (staging / name).is_file():
                os.unlink(staging / name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(claim)
            cleared.append(name)
        finally:
            if fd is not None:
                os.close(fd)
    return cleared
