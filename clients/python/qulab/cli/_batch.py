"""Running many items through the server without holding them all: a bidirectional stream
(ParseMolecules) or a bounded window of concurrent unary calls (one per file), answers in
input order, each failure reported and the run going on, except for the errors that
would fail every remaining item as well (see `stops_the_run`)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from google.protobuf.message import Message

from qulab.cli._common import ExitCode, exit_code_for, stops_the_run, worst
from qulab.cli._output import Item, Outcome, Reporter, Sink, describe, summarise
from qulab.client.errors import QulabError, from_status
from qulab.v1 import molecule_pb2

__all__ = ["STREAM_WINDOW", "run", "stream_molecules", "unary_outcomes"]

# Requests sent and not yet answered on a stream; the server's flow control would bound
# them too, but only once its HTTP/2 window (megabytes of small requests) is full.
STREAM_WINDOW = 1024

ResponseT = TypeVar("ResponseT", bound=Message)


def run(
    outcomes: Iterator[Outcome],
    sink: Sink,
    close_sink: Callable[[], None],
    reporter: Reporter,
    *,
    summary: bool,
    destination: str | None,
) -> ExitCode:
    """Write every outcome, report each failure, and return the run's exit status."""
    status = ExitCode.OK
    done = failed = 0
    try:
        for outcome in outcomes:
            done += 1
            sink.write(outcome)
            if outcome.error is not None:
                failed += 1
                reporter.failed(outcome)
                status = worst(status, exit_code_for(outcome.error))
            reporter.advance()
    except QulabError as error:
        reporter.say(f"qulab: stopped after {done} items: {describe(error)}")
        status = worst(status, exit_code_for(error))
    finally:
        reporter.close()
        close_sink()
    if summary:
        reporter.say(summarise(done, failed, destination))
    return status


def stream_molecules(
    parse: Callable[
        [Iterable[molecule_pb2.ParseMoleculeRequest]],
        Iterator[molecule_pb2.ParseMoleculeResponse],
    ],
    requests: Iterable[tuple[Item, molecule_pb2.ParseMoleculeRequest]],
    *,
    window: int = STREAM_WINDOW,
) -> Iterator[Outcome]:
    """The items' answers from one ParseMolecules stream, in order. `requests` is read
    lazily, by gRPC's sending thread, at most `window` items ahead of the answers; an
    exception it raises ends the stream cleanly and is raised here once the items sent
    before it have their answers."""
    pending: deque[Item] = deque()
    slots = threading.Semaphore(window)
    stopped = threading.Event()
    failure: list[BaseException] = []

    def send() -> Iterator[molecule_pb2.ParseMoleculeRequest]:
        try:
            for item, request in requests:
                while not slots.acquire(timeout=0.1):
                    if stopped.is_set():
                        return
                pending.append(item)
                yield request
        except Exception as error:  # re-raised in the caller's thread, below
            failure.append(error)

    try:
        for response in parse(send()):
            item = pending.popleft()
            slots.release()
            if response.HasField("error"):
                yield Outcome(item, None, from_status(response.error))
            else:
                yield Outcome(item, response, None)
    finally:
        stopped.set()
    if failure:
        raise failure[0]


def unary_outcomes(
    items: Iterable[Item], call: Callable[[Item], ResponseT], *, jobs: int
) -> Iterator[Outcome]:
    """One call per item, `jobs` at a time, answers in item order. A failure that stops
    the run (`stops_the_run`) is raised; any other is the item's outcome."""
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="qulab-call")
    window: deque[tuple[Item, Future[ResponseT]]] = deque()

    def settle(item: Item, future: Future[ResponseT]) -> Outcome:
        try:
            return Outcome(item, future.result(), None)
        except QulabError as error:
            if stops_the_run(error):
                raise
            return Outcome(item, None, error)

    try:
        for item in items:
            window.append((item, pool.submit(call, item)))
            if len(window) >= 2 * jobs:
                yield settle(*window.popleft())
        while window:
            yield settle(*window.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
