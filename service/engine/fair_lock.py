"""A lock granted in the order it was asked for.

One forward pass runs at a time. The batcher's model thread takes the model lock for every step and asks for
it again at once; `threading.Lock` favours whoever releases it, so another thread (an upload's probe pass)
could wait for many steps, seconds on a CPU. Granting in arrival order makes it wait one step at most.
"""

from __future__ import annotations

import threading
from collections import deque


class FairLock:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._waiting: deque[object] = deque()
        self._held = False

    def acquire(self) -> None:
        with self._condition:
            turn = object()
            self._waiting.append(turn)
            while self._held or self._waiting[0] is not turn:
                self._condition.wait()
            self._waiting.popleft()
            self._held = True

    def release(self) -> None:
        with self._condition:
            self._held = False
            self._condition.notify_all()

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
