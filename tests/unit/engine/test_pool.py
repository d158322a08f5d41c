"""The scheduler of parallel apply (promote.engine.pool) over fake work: no cluster, no clock.

Concurrency is shown by jobs that can only finish together (each waits for another), never by timing.
"""

from __future__ import annotations

import _thread
import threading
import time

import pytest

from promote.engine import pool

WAIT = 30.0  # a generous bound on events that must come: only a broken pool ever reaches it


class Boom(Exception):
    pass


def _join_thread(name: str) -> None:
    """Wait for the thread of that name to end (gone already is fine)."""
    for t in [t for t in threading.enumerate() if t.name == name]:
        t.join(WAIT)


def test_jobs_run_at_once_and_results_keep_definition_order() -> None:
    # Job i finishes only after job i+1 finished: possible only if all four run at once, and they
    # finish in the reverse of their order.
    done = [threading.Event() for _ in range(4)]
    finished: list[int] = []

    def work(i: int) -> str:
        if i < 3:
            assert done[i + 1].wait(WAIT), f"job {i + 1} never finished while {i} ran"
        finished.append(i)
        done[i].set()
        return f"r{i}"

    ran = pool.run(range(4), [[]] * 4, work, concurrency=4)

    assert finished == [3, 2, 1, 0]
    assert [o.result for o in ran.outcomes] == ["r0", "r1", "r2", "r3"]
    assert not ran.failed and not ran.interrupted
    assert not [t for t in threading.enumerate() if t.name.startswith("promote-sync-")]  # all joined


def test_no_more_than_concurrency_run_at_once() -> None:
    barrier = threading.Barrier(3, timeout=WAIT)  # three must meet: proves three ran together
    lock = threading.Lock()
    running, peak = 0, 0

    def work(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        if i < 3:
            barrier.wait()
        with lock:
            running -= 1
        return i

    ran = pool.run(range(7), [[]] * 7, work, concurrency=3)

    assert peak == 3
    assert [o.result for o in ran.outcomes] == list(range(7))


def test_a_failure_stops_new_jobs_and_lets_running_ones_finish() -> None:
    started: list[int] = []
    failing_started = threading.Event()

    def work(i: int) -> int:
        started.append(i)
        if i == 1:
            failing_started.set()
            raise Boom("job 1 failed")
        if i == 0:
            # Still running when 1 fails; ends only once 1's thread has handed in its failure.
            assert failing_started.wait(WAIT)
            _join_thread("promote-sync-1")
        return i

    ran = pool.run(range(5), [[]] * 5, work, concurrency=2)

    assert sorted(started) == [0, 1]
    assert ran.outcomes[0].ok and ran.outcomes[0].result == 0  # the running one finished
    assert isinstance(ran.outcomes[1].error, Boom)
    assert [o.started for o in ran.outcomes[2:]] == [False, False, False]
    assert ran.failed


def test_sequential_runs_inline_in_dependency_order() -> None:
    order: list[tuple[int, str]] = []

    def work(i: int) -> int:
        order.append((i, threading.current_thread().name))
        return i

    ran = pool.run(range(3), [[2], [], []], work, concurrency=1)  # 0 after 2

    assert [i for i, _ in order] == [1, 2, 0]
    assert {name for _, name in order} == {threading.current_thread().name}
    assert [o.result for o in ran.outcomes] == [0, 1, 2]


def test_sequential_stops_at_the_first_failure() -> None:
    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        if i == 1:
            raise Boom("no")
        return i

    ran = pool.run(range(4), [[]] * 4, work, concurrency=1)

    assert started == [0, 1]
    assert [o.started for o in ran.outcomes] == [True, True, False, False]


def test_sequential_lets_keyboard_interrupt_through() -> None:
    def work(i: int) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pool.run(range(2), [[]] * 2, work, concurrency=1)


def test_a_dependent_starts_only_after_its_dependency_finished() -> None:
    events: list[str] = []
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            events.append(f"start {i}")
        with lock:
            events.append(f"end {i}")
        return i

    ran = pool.run(range(4), [[3], [0], [], []], work, concurrency=4)  # 0 after 3, 1 after 0

    assert events.index("end 3") < events.index("start 0") < events.index("end 0") < events.index("start 1")
    assert all(o.ok for o in ran.outcomes)


def test_a_failed_dependency_keeps_its_dependents_from_starting() -> None:
    def work(i: int) -> int:
        if i == 0:
            raise Boom("dependency failed")
        return i

    ran = pool.run(range(2), [[], [0]], work, concurrency=4)

    assert isinstance(ran.outcomes[0].error, Boom)
    assert not ran.outcomes[1].started


def test_an_interrupt_reaches_every_running_job_and_starts_no_more() -> None:
    waiting = [threading.Event() for _ in range(4)]
    restored: list[int] = []

    def work(i: int) -> int:
        try:
            waiting[i].set()
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:  # a release waiting for health
                time.sleep(0.01)
        except KeyboardInterrupt:
            restored.append(i)  # where a release sync restores its release
            raise
        return i

    def ctrl_c() -> None:
        assert waiting[0].wait(WAIT) and waiting[1].wait(WAIT)
        _thread.interrupt_main()  # as SIGINT does: KeyboardInterrupt in the main thread only

    threading.Thread(target=ctrl_c).start()
    ran = pool.run(range(4), [[]] * 4, work, concurrency=2)

    assert ran.interrupted
    assert sorted(restored) == [0, 1]
    assert all(isinstance(o.error, KeyboardInterrupt) for o in ran.outcomes[:2])
    assert [o.started for o in ran.outcomes[2:]] == [False, False]
    assert not [t for t in threading.enumerate() if t.name.startswith("promote-sync-")]


def test_a_single_job_runs_in_the_callers_thread() -> None:
    names: list[str] = []
    ran = pool.run(["only"], [[]], lambda item: names.append(threading.current_thread().name), concurrency=4)

    assert names == [threading.current_thread().name]
    assert ran.outcomes[0].ok
