"""Worker processes that take the clients' connections in turn.

`labshare serve --workers N` runs N processes on one listening socket. Each one's event loop
(uvloop's, or asyncio's) accepts every connection waiting whenever it wakes, so when many
clients connect at once most of them land on whichever process woke first: 32 keep-alive
connections opened together were split 30/2, 29/3 and 6/26 between two workers. Those
connections stay where they landed for as long as they live, and the busier worker's
requests wait the longest (bench/booking.py: p99 more than twice the mean).

Here each worker waits for connections in a thread of its own, in a blocking `accept()`,
and takes one at a time, and only while it holds no more connections than the worker
holding fewest (their counts are kept in a small file they all map, `Tally`): the workers
take turns, and a client connecting later goes to the one with fewest. A worker that does
not take its turn within TURN_SECONDS (stuck, or gone) is passed over. The accepted socket
is handed to the worker's loop, which serves it exactly as it serves one it accepted
itself. Measured with bench/booking.py's client: 16/16 in each of nine runs, where the
loops' own servers gave 19/13, 18/14 and 19/13 in the same hour.

Used only when several processes share the socket; one process keeps its loop's own server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import logging
import mmap
import os
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger("uvicorn.error")

# How often a waiting accept() comes back to see whether its listener was closed: less than
# the 0.1 s uvicorn's shutdown waits before it counts the connections still open, so that
# one taken meanwhile is counted, and served.
WAKE_SECONDS = 0.05
# How long a worker holding more connections than another leaves the next one to it.
TURN_SECONDS = 0.1
# A worker whose count has not been refreshed for this long is gone, or stuck: not counted.
GONE_SECONDS = 1.0
# How long a stopping worker waits for connections it took after it was told to stop.
LATE_SECONDS = 10.0
# Errors after which accepting goes on after a pause (too many open files, no memory).
PASSING = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# A connection the client gave up on before it was taken: take the next.
GONE = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM}


class Tally:
    """How many connections each worker sharing one socket holds: a slot per worker (its
    pid, its count and when it last wrote) in a small file they all map, named after the
    socket, which they share. A worker that cannot have a slot takes its turns blind."""

    SLOTS = 64
    _slot = struct.Struct("qqd")

    def __init__(self, sock: socket.socket) -> None:
        folder = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
        inode = os.fstat(sock.fileno()).st_ino
        self.path = folder / f"labshare-{os.getuid()}-{inode}.turns"
        size = self.SLOTS * self._slot.size
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with self._locked():
            if os.fstat(self._fd).st_size < size:
                os.ftruncate(self._fd, size)
            self._map = mmap.mmap(self._fd, size)
            self._offset = self._claim()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _slots(self) -> Iterator[tuple[int, int, int, float]]:
        for index in range(self.SLOTS):
            offset = index * self._slot.size
            yield (offset, *self._slot.unpack_from(self._map, offset))

    def _claim(self) -> int | None:
        now = time.monotonic()
        for offset, pid, _, written in self._slots():
            if pid == 0 or now - written > GONE_SECONDS:
                self._slot.pack_into(self._map, offset, os.getpid(), 0, now)
                return offset
        logger.warning("More than %d workers on one socket: some take turns blind", self.SLOTS)
        return None

    def write(self, held: int) -> None:
        """This worker's count (and that it is still here)."""
        if self._offset is not None:
            self._slot.pack_into(self._map, self._offset, os.getpid(), held, time.monotonic())

    def fewest_elsewhere(self) -> int | None:
        """The fewest connections another live worker holds; None when there is none."""
        now, fewest = time.monotonic(), None
        for offset, pid, held, written in self._slots():
            if pid and offset != self._offset and now - written <= GONE_SECONDS:
                fewest = held if fewest is None else min(fewest, held)
        return fewest

    def close(self) -> None:
        """Give the slot back; the last worker out removes the file (a worker killed
        outright left its slot written: long ago, or by a process no longer running)."""
        with self._locked():
            if self._offset is not None:
                self._slot.pack_into(self._map, self._offset, 0, 0, 0.0)
            now = time.monotonic()
            if not any(
                pid and now - written <= GONE_SECONDS and _alive(pid)
                for _, pid, _, written in self._slots()
            ):
                self.path.unlink(missing_ok=True)
            self._map.close()
        os.close(self._fd)


def _alive(pid: int) -> bool:
    """Whether a process runs (a killed worker not yet reaped by its supervisor does not)."""
    if not Path("/proc/self/stat").exists():  # no /proc: only whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


class TakingTurns:
    """A listener for one shared socket: what the loop's `create_server` returns, as far as
    uvicorn's server uses it (`close` and `wait_closed`)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        sock: socket.socket,
        *,
        ssl: Any = None,
        backlog: int = 100,
    ) -> None:
        self._loop = loop
        self._protocol_factory = protocol_factory
        self._sock = sock
        self._ssl = ssl
        self._closed = threading.Event()
        self._connecting: set[asyncio.Task[Any]] = set()
        self._late: list[asyncio.BaseTransport] = []
        self._held = 0  # connections open, taken by this worker
        self._held_lock = threading.Lock()
        try:
            self._tally: Tally | None = Tally(sock)
        except OSError as exc:
            logger.warning("Taking connections in turn without counts: %s", exc)
            self._tally = None
        # Every worker sets the same on the one socket they share: listening (uvicorn only
        # binds it), blocking, so that accept() waits in the kernel's queue of waiters, and
        # a receive timeout, so that it comes back now and then to see whether to stop.
        sock.listen(backlog)
        sock.setblocking(True)
        sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_RCVTIMEO,
            struct.pack("ll", 0, int(WAKE_SECONDS * 1_000_000)),
        )
        self._thread = threading.Thread(
            target=self._accept_in_turn, name="labshare-accept", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop taking connections; those taken are served to their end."""
        self._closed.set()

    async def wait_closed(self) -> None:
        """Until the thread has stopped taking connections, and those it took after the
        server began to stop have been served (or LATE_SECONDS)."""
        while self._thread.is_alive() or self._connecting:
            await asyncio.sleep(WAKE_SECONDS / 5)
        deadline = self._loop.time() + LATE_SECONDS
        while any(not t.is_closing() for t in self._late) and self._loop.time() < deadline:
            await asyncio.sleep(0.1)

    def _accept_in_turn(self) -> None:
        try:
            self._take_turns()
        finally:
            # Connections still open count themselves down later, on the loop: under the
            # same lock, so that none writes to the file as it is given back.
            with self._held_lock:
                if self._tally is not None:
                    self._tally.close()
                    self._tally = None

    def _my_turn(self) -> None:
        """Until this worker holds no more connections than any other (or TURN_SECONDS)."""
        tally = self._tally  # set to None only by this thread, as it ends
        if tally is None:
            return
        deadline = time.monotonic() + TURN_SECONDS
        while not self._closed.is_set():
            with self._held_lock:
                tally.write(self._held)
                held = self._held
            fewest = tally.fewest_elsewhere()
            if fewest is None or held <= fewest or time.monotonic() > deadline:
                return
            self._closed.wait(0.001)

    def _count(self, change: int) -> None:
        with self._held_lock:
            self._held += change
            if self._tally is not None:
                self._tally.write(self._held)

    def _take_turns(self) -> None:
        while not self._closed.is_set():
            self._my_turn()
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                continue  # the receive timeout: nobody connected meanwhile
            except OSError as exc:
                if self._closed.is_set() or exc.errno == errno.EBADF:
                    break
                if exc.errno in GONE:
                    continue
                if exc.errno in PASSING:
                    logger.error("Accepting connections paused a second: %s", exc)
                    self._closed.wait(1)
                    continue
                logger.error("Accepting connections stopped: %s", exc)
                break
            self._count(+1)
            try:
                self._loop.call_soon_threadsafe(self._serve, conn)
            except RuntimeError:  # the loop has closed: the server is gone
                conn.close()
                break

    def _serve(self, conn: socket.socket) -> None:
        task = self._loop.create_task(self._connect(conn, late=self._closed.is_set()))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, conn: socket.socket, *, late: bool) -> None:
        let_go = _once(lambda: self._count(-1))

        def counted() -> asyncio.BaseProtocol:
            protocol = self._protocol_factory()
            lost = protocol.connection_lost

            def connection_lost(exc: Exception | None) -> None:
                try:
                    lost(exc)
                finally:
                    let_go()

            protocol.connection_lost = connection_lost  # type: ignore[method-assign]
            return protocol

        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport, _ = await self._loop.connect_accepted_socket(counted, conn, ssl=self._ssl)
        except OSError as exc:  # reset by the client meanwhile, or an SSL handshake failed
            logger.debug("A connection closed before it was served: %s", exc)
            conn.close()
            let_go()
            return
        if late:
            self._late.append(transport)


def _once(fn: Callable[[], None]) -> Callable[[], None]:
    done = False

    def call() -> None:
        nonlocal done
        if not done:
            done = True
            fn()

    return call


@functools.cache
def _taking_turns(base: type[asyncio.AbstractEventLoop]) -> type[asyncio.AbstractEventLoop]:
    """`base`, but a server on a socket handed to it takes connections in turn."""

    class Loop(base):  # type: ignore[valid-type, misc]
        async def create_server(  # type: ignore[override]
            self,
            protocol_factory: Callable[[], asyncio.BaseProtocol],
            host: Any = None,
            port: Any = None,
            *,
            sock: socket.socket | None = None,
            ssl: Any = None,
            backlog: int = 100,
            **kwargs: Any,
        ) -> Any:
            if sock is None or sock.type != socket.SOCK_STREAM:
                return await super().create_server(
                    protocol_factory, host, port, sock=sock, ssl=ssl, backlog=backlog, **kwargs
                )
            return TakingTurns(self, protocol_factory, sock, ssl=ssl, backlog=backlog)

    Loop.__name__ = Loop.__qualname__ = f"TakingTurns{base.__name__}"
    return Loop


def _base_loop() -> type[asyncio.AbstractEventLoop]:
    """uvloop's loop where it is installed (what uvicorn's "auto" picks), asyncio's
    otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.SelectorEventLoop
    return uvloop.Loop


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's `loop` setting (`labshare.balanced:new_event_loop`) for processes sharing
    one socket: the loop uvicorn would pick, taking connections in turn."""
    return _taking_turns(_base_loop())()
