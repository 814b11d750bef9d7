"""The threads units of work run in, and the hop to them from the event loop.

Each request's database work runs in a worker thread (core.routing). The hop there and
back was anyio's run_in_threadpool (sniffio's detection, a capacity limiter and a cancel
scope every call: about a sixth of the event loop's time a booking request), then
concurrent.futures' executor (a Future, a Condition and a semaphore a call: its submit
alone was 8% of the event loop's time under bench/booking.py). Here a call is a plain
record put on one queue; a thread runs it and hands the outcome to the caller's loop with
one call_soon_threadsafe. CPU a round trip of a trivial call costs (bench/thread_hop.py,
uvloop): anyio 31.8 us, the executor 19.3 us, this 11.1 us.

What the earlier hops guaranteed still holds: the call runs in a copy of the caller's
context, and a caller cancelled while its call runs or waits (the server stopping) waits
for the call to end before the cancellation goes on, so the gate's slot it holds is never
free while a thread still uses its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from contextvars import Context, copy_context
from dataclasses import dataclass, field
from typing import Any

from core.settings import get_settings


@dataclass(eq=False)
class Call:
    """One function call to run in a worker thread, and where its outcome goes."""

    loop: asyncio.AbstractEventLoop
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    context: Context = field(default_factory=copy_context)
    outcome: asyncio.Future[Any] = field(init=False)
    finished: bool = False  # set on the loop, when the outcome has been delivered
    _waiter: asyncio.Future[None] | None = None

    def __post_init__(self) -> None:
        self.outcome = self.loop.create_future()

    def run(self) -> None:
        """In a worker thread: the call, then its outcome handed to the caller's loop."""
        result, error = None, None
        try:
            result = self.context.run(self.fn, *self.args)
        except BaseException as exc:  # the caller's to see, whatever it is
            error = exc if not isinstance(exc, StopIteration) else RuntimeError(repr(exc))
        # A loop that has closed meanwhile: nobody waits for this call any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._deliver, result, error)

    def _deliver(self, result: Any, error: BaseException | None) -> None:
        self.finished = True
        if not self.outcome.done():  # not when the caller was cancelled
            if error is None:
                self.outcome.set_result(result)
            else:
                self.outcome.set_exception(error)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def until_finished(self) -> None:
        """Wait for the call to end, whatever cancellations come meanwhile."""
        while not self.finished:
            if self._waiter is None or self._waiter.done():
                self._waiter = self.loop.create_future()
            try:
                await self._waiter
            except asyncio.CancelledError:
                continue


class WorkerThreads:
    """At most `most` threads, started as calls need them, each taking the next call
    from one queue. A call never waits for a thread while fewer than `most` run: one is
    started whenever the queued calls outnumber the idle and starting threads."""

    def __init__(self, most: int, name: str = "labshare-work") -> None:
        self.most = most
        self.name = name
        self._calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.started = 0
        self._starting = 0
        self._idle = 0
        self._queued = 0

    def submit(self, call: Call) -> None:
        with self._lock:
            self._queued += 1
            start = self._queued > self._idle + self._starting and self.started < self.most
            if start:
                self.started += 1
                self._starting += 1
                number = self.started
        self._calls.put(call)
        if start:
            threading.Thread(target=self._serve, name=f"{self.name}-{number}", daemon=True).start()

    def _serve(self) -> None:
        with self._lock:
            self._starting -= 1
            self._idle += 1
        while True:
            call = self._calls.get()
            with self._lock:
                self._idle -= 1
                self._queued -= 1
            call.run()
            with self._lock:
                self._idle += 1


_threads: WorkerThreads | None = None
_threads_lock = threading.Lock()


def worker_threads() -> WorkerThreads:
    """The process's threads for units of work, made on first use: as many as
    `server_threads`, and at least one per gate slot."""
    global _threads
    if _threads is None:
        with _threads_lock:
            if _threads is None:
                settings = get_settings()
                _threads = WorkerThreads(max(settings.server_threads, settings.gate_slots))
    return _threads


async def in_worker_thread(
    fn: Callable[..., Any], *args: Any, threads: WorkerThreads | None = None
) -> Any:
    """`fn(*args)` in a worker thread (the process's, or `threads`), in a copy of the
    caller's context; a caller cancelled meanwhile waits for it to end, then raises."""
    call = Call(asyncio.get_running_loop(), fn, args)
    (threads or worker_threads()).submit(call)
    try:
        return await call.outcome
    except asyncio.CancelledError:
        await call.until_finished()
        raise
