"""Inference off the event loop, bounded: a fixed number of worker threads and a short queue.

A request that finds the queue full is refused at once with 503 and ``Retry-After`` instead of
waiting behind a long line; a request whose client has gone away is dropped before its turn (and
the audio-length check stops as soon as it sees the client is gone), so abandoned uploads cost
nothing; ``/health`` and the other light routes never wait behind the model.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from .errors import ApiError

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


class WorkQueue:
    def __init__(self, workers: int = 1, max_waiting: int = 8, retry_after_seconds: int = 1):
        if workers < 1 or max_waiting < 0:
            raise ValueError("workers must be at least 1 and the queue length at least 0")
        self.workers = workers
        self.capacity = workers + max_waiting
        self.retry_after_seconds = retry_after_seconds
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gvd-inference")
        self._pending = 0  # queued + running; touched only on the event loop
        self.refused = 0
        self.abandoned = 0

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, job: Callable[[threading.Event], T], disconnected: Callable[[], "asyncio.Future[bool]"]) -> T:
        """Run ``job(cancelled)`` in a worker; 503 when full, :class:`ClientGone` when the client leaves."""
        self.check_room()
        self._pending += 1
        cancelled = threading.Event()

        def guarded() -> T:
            if cancelled.is_set():
                raise ClientGone()
            return job(cancelled)

        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, guarded)
        future.add_done_callback(lambda _: self._release())
        watcher = asyncio.ensure_future(self._watch(disconnected))
        try:
            done, _ = await asyncio.wait({future, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if future not in done:
            cancelled.set()  # the slot is freed when the worker finishes or skips the job
            self.abandoned += 1
            future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
            raise ClientGone()
        return future.result()

    def check_room(self) -> None:
        """503 + Retry-After when the queue is full (also called before an upload is read)."""
        if self._pending >= self.capacity:
            self.refused += 1
            raise ApiError(503, "busy", f"the server is busy ({self._pending} requests queued or running); "
                           f"try again in {self.retry_after_seconds} s",
                           headers={"Retry-After": str(self.retry_after_seconds)})

    def _release(self) -> None:
        self._pending -= 1

    @staticmethod
    async def _watch(disconnected) -> None:
        while not await disconnected():
            await asyncio.sleep(0.1)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
