"""The model lock is granted in arrival order: a thread that asks while the model thread steps gets the next
turn, however fast the model thread asks again."""

from __future__ import annotations

import threading
import time

from service.engine.fair_lock import FairLock


def test_a_waiting_thread_gets_the_lock_before_its_holder_takes_it_again():
    lock = FairLock()
    order: list[str] = []
    lock.acquire()
    waiter = threading.Thread(target=lambda: (lock.acquire(), order.append("waiter"), lock.release()))
    waiter.start()
    while not lock._waiting:  # the waiter is queued behind the holder
        time.sleep(0.001)
    lock.release()
    lock.acquire()  # the holder asks again at once, as the model thread does every step
    order.append("holder")
    lock.release()
    waiter.join(10)
    assert order == ["waiter", "holder"]


def test_many_threads_each_get_the_lock_once_and_never_together():
    lock = FairLock()
    inside, most, count = 0, 0, 0
    guard = threading.Lock()

    def work():
        nonlocal inside, most, count
        for _ in range(50):
            with lock:
                with guard:
                    inside += 1
                    most = max(most, inside)
                    count += 1
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most == 1 and count == 400
