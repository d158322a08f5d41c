"""Running the releases of one environment at once: bounded, in dependency order, stopping on a failure.

A small scheduler over any work function, so its rules are tested without a cluster. At most
`concurrency` jobs run at once; a job starts once every job it comes after has succeeded, the first
ready in definition order first; a failure stops new jobs from starting and lets the running ones
finish; outcomes come back in definition order, whatever finished first. With a concurrency of 1
(or a single job) the jobs run in the caller's thread, one after another, as before there was a pool.

Ctrl-C and SIGTERM reach only the main thread. The pool then stops starting jobs, raises
KeyboardInterrupt in the thread of every job still running (where a release sync restores its
release, as it does when the interrupt comes in the main thread) and passes the interrupt on to
their helm children as SIGINT, which a terminal's Ctrl-C would have sent them anyway, so that a
thread blocked on helm sees it at once. Every thread is joined before `run` returns.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_POLL = 0.5  # seconds between looks at the finished jobs: how late Ctrl-C may be noticed at worst


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """What became of one job: not started, running, or finished with its result or what it raised."""

    started: bool = False
    finished: bool = False
    result: R | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """Finished without raising."""
        return self.finished and self.error is None


@dataclass(frozen=True)
class Ran(Generic[R]):
    """Every job's outcome in definition order, and whether the run was interrupted (Ctrl-C, SIGTERM)."""

    outcomes: list[Outcome[R]]
    interrupted: bool = False

    @property
    def failed(self) -> bool:
        """Some job raised."""
        return any(o.error is not None for o in self.outcomes)


def serialized(fn: Callable[[T], None]) -> Callable[[T], None]:
    """`fn` made safe to call from several threads: one call at a time, so lines never interleave."""
    lock = threading.Lock()

    def call(arg: T) -> None:
        with lock:
            fn(arg)

    return call


def run(
    items: Sequence[T],
    after: Sequence[Collection[int]],
    work: Callable[[T], R],
    concurrency: int,
) -> Ran[R]:
    """Run `work` over `items`, at most `concurrency` at once, item i only after the items `after[i]`
    (indices) succeeded. An exception stops new items from starting; it is kept in the item's outcome.
    Run in the caller's thread (a concurrency of 1, or one item), KeyboardInterrupt propagates as it
    comes."""
    if len(after) != len(items):
        raise ValueError("one `after` entry per item")
    if concurrency <= 1 or len(items) <= 1:
        return _inline(items, after, work)
    return _Threads(items, after, work, concurrency).run()


def _ready(i: int, after: Sequence[Collection[int]], outcomes: list[Outcome[R]]) -> bool:
    return all(outcomes[d].ok for d in after[i] if d != i)


def _inline(items: Sequence[T], after: Sequence[Collection[int]], work: Callable[[T], R]) -> Ran[R]:
    outcomes: list[Outcome[R]] = [Outcome() for _ in items]
    pending = list(range(len(items)))
    while pending:
        i = next((i for i in pending if _ready(i, after, outcomes)), None)
        if i is None:
            break  # what is left waits for something that will not come (a cycle: refused when loading)
        pending.remove(i)
        try:
            outcomes[i] = Outcome(started=True, finished=True, result=work(items[i]))
        except Exception as e:
            outcomes[i] = Outcome(started=True, finished=True, error=e)
            break
    return Ran(outcomes)


class _Threads(Generic[T, R]):
    """One run on threads: a thread per running job, the main thread scheduling and joining."""

    def __init__(
        self, items: Sequence[T], after: Sequence[Collection[int]], work: Callable[[T], R], concurrency: int
    ) -> None:
        self.items, self.after, self.work, self.concurrency = items, after, work, concurrency
        self.outcomes: list[Outcome[R]] = [Outcome() for _ in items]
        self.done: queue.Queue[tuple[int, Outcome[R]]] = queue.Queue()
        self.lock = threading.Lock()
        self.live: dict[int, int] = {}  # job → its thread's ident, while an interrupt may be raised in it
        self.interrupted = False  # set under `lock`, with the interrupts raised in the live threads

    def run(self) -> Ran[R]:
        pending = list(range(len(self.items)))
        threads: dict[int, threading.Thread] = {}
        stop = interrupted = False
        try:
            while True:
                try:
                    while not stop and self._running() < self.concurrency:
                        i = next((i for i in pending if _ready(i, self.after, self.outcomes)), None)
                        if i is None:
                            break
                        pending.remove(i)
                        threads[i] = threading.Thread(target=self._job, args=(i,), name=f"promote-sync-{i}")
                        self.outcomes[i] = Outcome(started=True)
                        threads[i].start()
                    if not self._running():
                        break
                    try:
                        i, outcome = self.done.get(timeout=_POLL)
                    except queue.Empty:
                        continue
                    self.outcomes[i] = outcome
                    stop = stop or outcome.error is not None
                except KeyboardInterrupt:
                    for i, t in threads.items():
                        if t.ident is None:  # the interrupt came between making the thread and starting it
                            self.outcomes[i] = Outcome()
                    if not interrupted:
                        stop = interrupted = True
                        self._interrupt()
                    # A second one is not passed on: the running jobs are restoring their releases.
        finally:
            for t in threads.values():
                if t.ident is not None:
                    t.join()
        return Ran(self.outcomes, interrupted)

    def _running(self) -> int:
        return sum(1 for o in self.outcomes if o.started and not o.finished)

    def _job(self, i: int) -> None:
        with self.lock:
            self.live[i] = threading.get_ident()
            late = self.interrupted  # started just as the interrupt came: it is not to begin
        result: R | None = None
        error: BaseException | None = None
        try:
            try:
                if late:
                    raise KeyboardInterrupt
                result = self.work(self.items[i])
            except BaseException as e:  # kept, not lost with the thread; the caller decides
                error = e
            finally:
                with self.lock:
                    self.live.pop(i, None)
        except BaseException as e:  # the interrupt landed between the job's end and leaving `live`
            if error is None and result is None:
                error = e
        self.done.put((i, Outcome(started=True, finished=True, result=result, error=error)))

    def _interrupt(self) -> None:
        """KeyboardInterrupt in every running job's thread, then SIGINT to our helm children to wake them."""
        with self.lock:
            self.interrupted = True
            for ident in self.live.values():
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt))
        for pid in _helm_children():
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(pid, signal.SIGINT)


def _helm_children() -> list[int]:
    """The helm processes this process started (Linux's /proc; elsewhere none are found, and a thread
    waiting on helm sees the interrupt when helm ends)."""
    pids: list[int] = []
    for children in Path("/proc/self/task").glob("*/children"):
        try:
            for pid in children.read_text().split():
                if Path(f"/proc/{pid}/comm").read_text().strip() == "helm":
                    pids.append(int(pid))
        except OSError:
            continue  # the thread or the child ended meanwhile
    return pids
