"""Inference off the event loop, bounded: a fixed number of workers and a short queue.

By default (``gvd serve``) the workers are separate processes at a lower priority: the model's NumPy
and onnxruntime work then never holds the event loop's interpreter lock, so ``/health`` and uploads
stay responsive while it runs. Tests may use threads (``processes=False``), which start instantly.

A request that finds the queue full is refused at once with 503 and ``Retry-After`` instead of
waiting behind a long line, and a request whose client has gone away is withdrawn from the queue
before its turn, so abandoned uploads cost no model work.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import ApiError

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


def _worker_init(nice: int) -> None:
    """Lower priority than the server's event loop, and exit with the server even after kill -9."""
    if nice:
        os.nice(nice)
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool's broken pipe still ends the worker
        pass


class WorkQueue:
    def __init__(self, workers: int = 1, max_waiting: int = 8, retry_after_seconds: int = 1,
                 processes: bool = False, nice: int = 5):
        if workers < 1 or max_waiting < 0:
            raise ValueError("workers must be at least 1 and the queue length at least 0")
        self.workers = workers
        self.capacity = workers + max_waiting
        self.retry_after_seconds = retry_after_seconds
        self._executor: Executor
        if processes:
            self._executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_worker_init, initargs=(nice,))
        else:
            self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gvd-inference")
        self._pending = 0  # queued + running; touched only on the event loop
        self.refused = 0
        self.abandoned = 0

    @property
    def pending(self) -> int:
        return self._pending

    def check_room(self) -> None:
        """503 + Retry-After when the queue is full (also called before an upload is read)."""
        if self._pending >= self.capacity:
            self.refused += 1
            raise ApiError(503, "busy", f"the server is busy ({self._pending} requests queued or running); "
                           f"try again in {self.retry_after_seconds} s",
                           headers={"Retry-After": str(self.retry_after_seconds)})

    async def run(self, disconnected: Callable[[], Awaitable[bool]], fn: Callable[..., T], *args) -> T:
        """``fn(*args)`` in a worker (picklable for processes); 503 when full, :class:`ClientGone`
        when the client leaves first."""
        self.check_room()
        self._pending += 1
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        future.add_done_callback(lambda _: self._release())
        watcher = asyncio.ensure_future(self._watch(disconnected))
        try:
            racers: set[asyncio.Future[Any]] = {future, watcher}
            done, _ = await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if future not in done:
            future.cancel()  # withdrawn if it has not started; a running job finishes (bounded by the limits)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            self.abandoned += 1
            raise ClientGone()
        return future.result()

    def _release(self) -> None:
        self._pending -= 1

    @staticmethod
    async def _watch(disconnected) -> None:
        while not await disconnected():
            await asyncio.sleep(0.1)

    def warm_up(self, fn: Callable[..., object], *args) -> None:
        """Start the workers now (spawned processes import the runtime once, before the first request)."""
        for future in [self._executor.submit(fn, *args) for _ in range(self.workers)]:
            future.result()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)  # a running job is bounded by the limits
