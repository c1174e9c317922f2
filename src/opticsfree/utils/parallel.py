"""The package's one process pool: workers that stay quiet on Ctrl-C and die with their parent."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Callable, Iterator

#: ``prctl`` option: the signal a process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1
#: Seconds between the fallback watchdog's checks of the parent process.
_WATCHDOG_INTERVAL = 1.0


def _watch_parent(parent: int, interval: float = _WATCHDOG_INTERVAL) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent:  # re-parented: the parent died
            os._exit(1)


def worker_init() -> None:
    """Initializer of every worker process (see :func:`process_pool`).

    * Ignores SIGINT: on Ctrl-C the terminal signals the whole process group, and the parent
      alone handles it (cancels the queued work, prints one line); workers print nothing.
    * Exits when the parent process dies, even by SIGKILL: on Linux via
      ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere (or if that call fails) a daemon thread
      polls ``os.getppid()`` every second and exits the worker once it was re-parented.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="opticsfree-parent-watchdog").start()


def resolve_workers(workers: int | None) -> int:
    """The one worker policy of every ``--workers`` option: ``0`` (or ``None``) is one process
    per CPU, ``1`` works in this process, ``N`` starts N processes.

    Raises:
        ValueError: a negative count.
    """
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be >= 0 (0: one per CPU), got {workers}")
    return workers or os.cpu_count() or 1


class InlineExecutor(Executor):
    """An executor that runs each task at once in this process: :func:`process_pool` with one
    worker, so that ``--workers 1`` means "in this process" at every call site."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - delivered through the future, as a pool does
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            future.set_exception(e)
        return future


@contextlib.contextmanager
def process_pool(workers: int) -> Iterator[Executor]:
    """A ``ProcessPoolExecutor`` of ``workers`` processes started with :func:`worker_init`, or an
    :class:`InlineExecutor` for ``workers <= 1`` (``0`` is resolved by
    :func:`resolve_workers` before it gets here).

    Every process pool of the package comes from here. On leaving the block normally the pool
    is shut down after its work; on an exception (Ctrl-C included) the queued tasks are
    cancelled and only the running ones are waited for (a few seconds at most), so the
    command stops promptly and no worker outlives it.
    """
    if workers <= 1:
        yield InlineExecutor()
        return
    pool = ProcessPoolExecutor(max_workers=workers, initializer=worker_init)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
