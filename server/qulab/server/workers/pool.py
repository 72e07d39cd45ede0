"""The worker pool: admission queue, batching, crash and deadline handling.

The event loop never runs chemistry. `WorkerPool.run(op, payload)` queues one item (a
serialized request); an idle worker takes the oldest op's queued items as one task (up to
`batch_max_items`, shared fairly between idle workers), and answers each item as soon as it
is computed. Hence:

- a worker that dies (RDKit can segfault) fails only the item it was computing, with
  INTERNAL and an error id that is logged; the items of its task it had not started are
  queued again at the front, and a new worker replaces it;
- an item that outlives its deadline gets its worker killed and replaced (DEADLINE_EXCEEDED);
- items whose caller went away (cancelled) or whose deadline passed while queued are dropped
  before they run;
- past `queue_size` queued items, `run` raises ResourceExhausted with a retry estimate, or
  (`wait=True`, for streams) waits for room.

Workers start through a `forkserver` that has imported the domain code once, so a
replacement is ready in milliseconds, and no process is ever forked from the gRPC process.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from qulab.server.config import Settings
from qulab.server.errors import DeadlineExceeded, Internal, ResourceExhausted, Unavailable
from qulab.server.workers import _wire
from qulab.server.workers._process import worker_main

__all__ = ["ItemResult", "PoolStats", "WorkerPool"]

_log = logging.getLogger("qulab.pool")

# Thread pools inside numpy/BLAS would fight the worker processes for the same cores, and
# threads must not be running in the forkserver when it forks.
_SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_READY_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class ItemResult:
    """A computed item. `body` is the serialized response when `ok`, else a serialized
    google.rpc.Status."""

    ok: bool
    body: bytes
    queue_ns: int
    compute_ns: int
    started_ns: int
    finished_ns: int
    worker_pid: int
    cache_hit: bool = False


@dataclass(slots=True)
class PoolStats:
    """What happened to the pool since it started; read when metrics are scraped and by
    GetServerInfo, never on the call path."""

    replaced: int = 0  # workers started in place of one that exited
    crashed: int = 0  # exits that failed an item (a signal, a bug in C++)
    overran: int = 0  # workers killed for outliving a deadline
    expired_in_queue: int = 0  # items dropped before they ran: their deadline had passed
    replaced_at: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=64)
    )  # time.monotonic() of recent replacements

    def replaced_within(self, seconds: float) -> int:
        since = time.monotonic() - seconds
        return sum(1 for t in self.replaced_at if t >= since)


class _Item:
    __slots__ = ("deadline", "enqueued_ns", "future", "op", "payload")

    def __init__(
        self, op: str, payload: bytes, deadline: float, future: asyncio.Future[ItemResult]
    ) -> None:
        self.op = op
        self.payload = payload
        self.deadline = deadline  # loop.time() seconds
        self.future = future
        self.enqueued_ns = time.time_ns()


class _Worker:
    __slots__ = (
        "batch",
        "deadline_killed",
        "exiting",
        "gone",
        "next_index",
        "pid",
        "process",
        "task_id",
        "transport",
        "watchdog",
    )

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self.process = process
        self.pid = 0  # known once the worker says Ready
        self.transport: asyncio.Transport | None = None
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.batch: list[_Item] = []
        self.next_index = 0
        self.task_id = 0
        self.watchdog: asyncio.TimerHandle | None = None
        self.deadline_killed = False
        self.exiting = False  # the worker said it leaves on purpose

    def send(self, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(_wire.frame(body))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class WorkerPool:
    """Worker processes behind a bounded admission queue. Use from one event loop."""

    def __init__(
        self, settings: Settings, on_serving_change: Callable[[bool], None] | None = None
    ) -> None:
        self._settings = settings
        self._size = settings.workers or os.cpu_count() or 1
        self._on_serving_change = on_serving_change
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["qulab.server.workers._ops"])
        # Process.start() talks to the forkserver synchronously: keep it off the event loop.
        self._spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="spawner")
        # Held around every read of a worker's exit status. The forkserver sends a child's
        # status once, down a pipe, and Process.start() reads the statuses of finished
        # children too (multiprocessing's `_cleanup`): when a replacement starts while the
        # dead worker is reaped, two threads read that pipe, and the one that finds it
        # empty records exit code 255 (measured: "exit code 255" logged for a SIGSEGV,
        # 3 times in 8).
        self._status_lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._idle: list[_Worker] = []
        self._queues: dict[str, collections.deque[_Item]] = collections.defaultdict(
            collections.deque
        )
        self._queued = 0
        self._room = asyncio.Event()
        self._next_task_id = 0
        self._serving = False
        self._closing = False
        self._item_ms = 1.0  # moving average of compute time, for retry estimates
        self._spawning: set[asyncio.Task[None]] = set()
        self._exiting: set[asyncio.Task[None]] = set()  # keeps exit handlers referenced
        self.stats = PoolStats()

    @property
    def size(self) -> int:
        return self._size

    @property
    def alive(self) -> int:
        return len(self._workers)

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def worker_pids(self) -> list[int]:
        # Also read by the metrics thread: copy the set first (one C call, under the GIL).
        return [w.pid for w in list(self._workers) if w.pid]

    async def start(self) -> None:
        """Start every worker and wait until each has loaded the domain code."""
        for name, value in _SINGLE_THREADED.items():
            os.environ.setdefault(name, value)  # inherited by the forkserver at its start
        results = await asyncio.gather(
            *(self._spawn() for _ in range(self._size)), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self.close()
            raise RuntimeError(f"{len(failures)} worker(s) failed to start") from failures[0]
        self._update_serving()

    async def run(
        self, op: str, payload: bytes, *, deadline: float, wait: bool = False
    ) -> ItemResult:
        """Compute one item. `deadline` is in `loop.time()` seconds.

        Raises Unavailable (closing), ResourceExhausted (queue full and not `wait`),
        DeadlineExceeded or Internal (the worker died computing it).
        """
        loop = asyncio.get_running_loop()
        while self._queued >= self._settings.queue_size and not self._closing:
            if not wait:
                raise ResourceExhausted(
                    f"the server's queue is full ({self._queued} items waiting)",
                    retry_after_ms=self._retry_after_ms(),
                )
            self._room.clear()
            await self._room.wait()
        if self._closing:
            raise Unavailable("the server is shutting down")
        if deadline <= loop.time():
            raise DeadlineExceeded("the deadline passed before the work was queued")
        item = _Item(op, payload, deadline, loop.create_future())
        self._queues[op].append(item)
        self._queued += 1
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("queued", extra={"op": op, "queued": self._queued})
        self._dispatch()
        return await item.future

    async def close(self) -> None:
        """Fail what is still queued, stop the workers, and wait for them to exit."""
        self._closing = True
        self._room.set()
        for queue in self._queues.values():
            while queue:
                item = queue.popleft()
                if not item.future.done():
                    item.future.set_exception(Unavailable("the server is shutting down"))
        self._queued = 0
        for task in list(self._spawning):
            task.cancel()
        workers = list(self._workers)
        for worker in workers:
            if worker.transport is not None:  # the worker finishes its task, reads EOF, exits
                worker.transport.write_eof()
        for worker in workers:
            await worker.gone
        self._update_serving()
        self._spawner.shutdown(wait=False)

    # -- admission and dispatch ------------------------------------------------------

    def _retry_after_ms(self) -> int:
        estimate = self._queued * self._item_ms / self._size
        return int(min(10_000.0, max(10.0, estimate)))

    def _dispatch(self) -> None:
        while self._idle and self._queued:
            batch = self._take_batch(len(self._idle))
            if batch:
                self._send(self._idle.pop(), batch)

    def _take_batch(self, idle: int) -> list[_Item]:
        now = asyncio.get_running_loop().time()
        heads = [(q[0].enqueued_ns, op) for op, q in self._queues.items() if q]
        queue = self._queues[min(heads)[1]]
        size = min(self._settings.batch_max_items, math.ceil(len(queue) / idle))
        batch: list[_Item] = []
        while queue and len(batch) < size:
            item = queue.popleft()
            self._queued -= 1
            if item.future.done():
                continue  # the caller went away
            if item.deadline <= now:
                self.stats.expired_in_queue += 1
                item.future.set_exception(
                    DeadlineExceeded("the deadline passed while the request was queued")
                )
                continue
            batch.append(item)
        if self._queued < self._settings.queue_size:
            self._room.set()
        return batch

    def _send(self, worker: _Worker, batch: list[_Item]) -> None:
        self._next_task_id += 1
        worker.task_id = self._next_task_id
        worker.batch = batch
        worker.next_index = 0
        now = asyncio.get_running_loop().time()
        task = _wire.Task(
            worker.task_id,
            batch[0].op,
            [item.payload for item in batch],
            [item.deadline - now for item in batch],
        )
        worker.send(_wire.encode(task))
        self._arm_watchdog(worker)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "task sent", extra={"op": task.op, "items": len(batch), "worker_pid": worker.pid}
            )

    def _arm_watchdog(self, worker: _Worker) -> None:
        if worker.watchdog is not None:
            worker.watchdog.cancel()
        item = worker.batch[worker.next_index]
        worker.watchdog = asyncio.get_running_loop().call_at(
            item.deadline, self._kill_overrun, worker, worker.task_id, worker.next_index
        )

    def _kill_overrun(self, worker: _Worker, task_id: int, index: int) -> None:
        if worker.task_id == task_id and worker.next_index == index and worker.batch:
            _log.warning(
                "worker overran a deadline; replacing it",
                extra={"worker_pid": worker.pid, "op": worker.batch[index].op},
            )
            worker.deadline_killed = True
            self.stats.overran += 1
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)

    # -- results -----------------------------------------------------------------------

    def _on_item_done(self, worker: _Worker, done: _wire.ItemDone) -> None:
        item = worker.batch[done.item]
        worker.next_index = done.item + 1
        worker.exiting = done.exiting
        self._item_ms += (done.compute_ns / 1e6 - self._item_ms) * 0.05
        if not item.future.done():
            item.future.set_result(
                ItemResult(
                    ok=done.ok,
                    body=done.body,
                    queue_ns=max(0, done.started_ns - item.enqueued_ns),
                    compute_ns=done.compute_ns,
                    started_ns=done.started_ns,
                    finished_ns=done.finished_ns,
                    worker_pid=worker.pid,
                )
            )
        if worker.next_index < len(worker.batch) and not worker.exiting:
            self._arm_watchdog(worker)
            return
        if worker.watchdog is not None:
            worker.watchdog.cancel()
            worker.watchdog = None
        if worker.exiting:
            return  # its end of the socket closes next; _on_worker_exit requeues the rest
        worker.batch = []
        if not self._closing:
            self._idle.append(worker)
            self._dispatch()

    async def _on_worker_exit(self, worker: _Worker) -> None:
        """The worker's socket closed: settle its items at once, replace it, then reap it."""
        if worker.watchdog is not None:
            worker.watchdog.cancel()
        self._workers.discard(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        worker.close()
        self._update_serving()
        unfinished = worker.batch[worker.next_index :]
        worker.batch = []
        error_id = op = None
        if unfinished and not worker.exiting:
            # Only the item being computed is to blame; the rest never started.
            op = unfinished[0].op
            error_id = self._fail_current(worker, unfinished.pop(0))
        for item in reversed(unfinished):
            if not item.future.done():
                self._queues[item.op].appendleft(item)
                self._queued += 1
        if not self._closing:
            self.stats.replaced += 1
            self.stats.replaced_at.append(time.monotonic())
            self._start_replacement()
        exitcode = await asyncio.get_running_loop().run_in_executor(None, self._reap, worker)
        if exitcode is None:
            worker.process.kill()
        if error_id is not None:
            self.stats.crashed += 1
            _log.error(
                "worker crashed",
                extra={
                    "error_id": error_id,
                    "op": op,
                    "worker_pid": worker.pid,
                    "cause": _describe_exit(exitcode),
                },
            )
        worker.gone.set_result(None)

    def _reap(self, worker: _Worker) -> int | None:
        """The exit code of a worker whose socket closed, once it has exited (None if it
        has not within _STOP_TIMEOUT_S). Polled under the status lock, in a thread."""
        end = time.monotonic() + _STOP_TIMEOUT_S
        while True:
            with self._status_lock:
                exitcode = worker.process.exitcode
            if exitcode is not None or time.monotonic() >= end:
                return exitcode
            time.sleep(0.005)

    def _start(self, process: multiprocessing.process.BaseProcess) -> None:
        with self._status_lock:  # start() reads finished children's statuses
            process.start()

    def _fail_current(self, worker: _Worker, item: _Item) -> str | None:
        """Fail the item a dead worker was computing; the error id of a crash, if any."""
        if worker.deadline_killed:
            if not item.future.done():
                item.future.set_exception(
                    DeadlineExceeded(
                        "the computation outlived its deadline; its worker process was replaced"
                    )
                )
            return None
        error = Internal(
            "the worker process computing this request crashed", reason="WORKER_CRASHED"
        )
        if not item.future.done():
            item.future.set_exception(error)
        return error.error_id

    # -- worker lifecycle --------------------------------------------------------------

    def _start_replacement(self) -> None:
        task = asyncio.get_running_loop().create_task(self._respawn())
        self._spawning.add(task)
        task.add_done_callback(self._spawning.discard)

    async def _respawn(self) -> None:
        delay = 0.05
        while not self._closing:
            try:
                await self._spawn()
                return
            except Exception:
                _log.exception("could not start a worker; retrying", extra={"delay_s": delay})
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        process = self._ctx.Process(
            target=worker_main, args=(theirs, self._settings), name="qulab-worker", daemon=True
        )
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._spawner, self._start, process)
        finally:
            theirs.close()
        worker = _Worker(process)
        ready: asyncio.Future[_wire.Ready] = loop.create_future()

        def on_message(message: _wire.Task | _wire.Ready | _wire.ItemDone) -> None:
            if isinstance(message, _wire.ItemDone):
                self._on_item_done(worker, message)
            elif isinstance(message, _wire.Ready) and not ready.done():
                ready.set_result(message)

        def on_closed() -> None:
            if not ready.done():
                ready.set_exception(ConnectionError("the worker closed its socket"))
            elif worker in self._workers:
                task = loop.create_task(self._on_worker_exit(worker))
                self._exiting.add(task)
                task.add_done_callback(self._exiting.discard)
            else:
                worker.gone.set_result(None)

        worker.transport, _ = await loop.create_connection(
            lambda: _wire.FrameProtocol(on_message, on_closed), sock=ours
        )
        try:
            worker.pid = (await asyncio.wait_for(ready, _READY_TIMEOUT_S)).pid
        except (TimeoutError, ConnectionError) as exc:
            worker.close()
            process.kill()
            raise RuntimeError(f"worker {process.pid} did not become ready") from exc
        if self._closing:
            worker.close()
            return
        self._workers.add(worker)
        self._idle.append(worker)
        self._update_serving()
        self._dispatch()

    def _update_serving(self) -> None:
        serving = bool(self._workers) and not self._closing
        if serving != self._serving:
            self._serving = serving
            _log.info(
                "worker pool %s",
                "serving" if serving else "not serving",
                extra={"workers": len(self._workers)},
            )
            if self._on_serving_change is not None:
                self._on_serving_change(serving)


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "did not exit; killed"
    if exitcode < 0:
        return f"signal {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"
