"""The package's one fan-out: :func:`map_chunks`, over its one process pool (:func:`process_pool`:
workers that stay quiet on Ctrl-C and die with their parent).

Every place that spreads work over processes (checking, importing, decoding, encoding images)
calls :func:`map_chunks`, so they share one worker policy (:func:`resolve_workers`), one
threshold below which the work stays in this process (:data:`MIN_PARALLEL`), one chunking rule
(:func:`chunk_size`), one bound on the work in flight (:data:`QUEUE_PER_WORKER`) and the
progress bar; :func:`process_pool` is called from this module only. The other ways work leaves
this process are here too: Ray tasks (:func:`ray_map`, :class:`RayTasks`, chosen with
:func:`check_executor`) and one call in a thread with a timeout (:func:`call_with_timeout`).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sized
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, as_completed, wait
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from opticsfree.errors import ConfigError

#: ``prctl`` option: the signal a process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1
#: Seconds between the fallback watchdog's checks of the parent process.
_WATCHDOG_INTERVAL = 1.0
#: Items per task of :func:`map_chunks` (fewer for small inputs, :func:`chunk_size`). An item is
#: an image to check, decode or encode (about a millisecond of work), so a task takes a fraction
#: of a second: its pickling and scheduling cost little, and the progress bar moves steadily.
CHUNK = 256
#: Inputs with fewer items than this are handled in this process by :func:`map_chunks`, whatever
#: the worker count: starting worker processes would cost more than it saves.
MIN_PARALLEL = 1000
#: Tasks queued or running per worker process at most (:func:`map_chunks` waits for the oldest
#: before it reads more items): bounds the memory of a huge or streamed input.
QUEUE_PER_WORKER = 4

T = TypeVar("T")
R = TypeVar("R")


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


def chunk_size(n: int | None, workers: int) -> int:
    """The one chunking rule of :func:`map_chunks`: :data:`CHUNK` items per task, or fewer, so
    that a small input still gives every worker a share.

    Args:
        n: the number of items, or None when unknown (a streamed input).
        workers: the resolved worker count (1: in this process).

    Returns:
        ``min(CHUNK, ceil(n / workers))`` (at least 1); :data:`CHUNK` when ``n`` is None.
    """
    if n is None:
        return CHUNK
    return max(1, min(CHUNK, -(-n // max(workers, 1))))


def map_chunks(fn: Callable[[list[T]], Sequence[R]], items: Iterable[T], *, workers: int | None = 0,
               chunk: int | None = None, min_parallel: int | None = None, desc: str | None = None,
               on_progress: Callable[[int], None] | None = None, ordered: bool = True) -> Iterator[R]:
    """Apply ``fn`` to ``items`` chunk by chunk, in worker processes when there are enough items;
    the one fan-out of the package.

    ``items`` is split into lists of :func:`chunk_size` items; each list goes to ``fn``, which
    returns one result per item. With more than one worker and at least ``min_parallel`` items
    the chunks run in :func:`process_pool`, else in this process. Items are read lazily (a
    generator is fine): at most :data:`QUEUE_PER_WORKER` chunks per worker are queued or running,
    and more items are read only when the oldest one is done, so memory stays bounded. On an
    exception (in ``fn``, in reading ``items``, Ctrl-C, or the caller closing the iterator) the
    queued chunks are cancelled and the running ones waited for.

    Args:
        fn: ``fn(chunk: list) -> list``, one result per item of the chunk, in its order; a
            module-level function (or a ``functools.partial`` of one), since it is pickled to
            the workers.
        items: the inputs; a sequence, or any iterable (its length then unknown: chunks of
            :data:`CHUNK`, and the first ``min_parallel`` items are read to decide).
        workers: the worker policy of every ``--workers`` option (:func:`resolve_workers`):
            0 (or None) one process per CPU, 1 this process, N at most N processes.
        chunk: items per task; None (every call in the package): the rule, :func:`chunk_size`.
        min_parallel: fewer items than this run in this process; None: :data:`MIN_PARALLEL`
            (read when called, so tests may lower it).
        desc: label of a transient progress bar over the items (None: no bar).
        on_progress: called with the number of items of each finished chunk (the calls sum to
            the number of items).
        ordered: True: the results in the order of ``items``; False: each chunk's results as
            soon as it finishes (for results that are ignored or name their item).

    Returns:
        An iterator over the results, one per item. Exhaust it or close it (a ``for`` loop that
        raises closes it; ``contextlib.closing`` when it is kept in a variable): the workers stop
        when it does.

    Raises:
        ValueError: a negative ``workers`` or a ``chunk`` below 1 (at once); ``fn`` returned a
            result count other than its chunk's length (while iterating). Whatever ``fn``
            raises is raised while iterating, in a worker or not.
    """
    n_workers = resolve_workers(workers)
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    threshold = MIN_PARALLEL if min_parallel is None else min_parallel
    return _map_chunks(fn, items, n_workers, chunk, threshold, desc, on_progress, ordered)


def _map_chunks(fn: Callable[[list[T]], Sequence[R]], items: Iterable[T], n_workers: int,
                chunk: int | None, threshold: int, desc: str | None,
                on_progress: Callable[[int], None] | None, ordered: bool) -> Iterator[R]:
    n = len(items) if isinstance(items, Sized) else None
    it: Iterator[T] = iter(items)
    if n_workers > 1 and n is None:  # a stream: read up to the threshold to decide
        head = list(itertools.islice(it, threshold))
        if len(head) < threshold:
            n, it = len(head), iter(head)
        else:
            it = itertools.chain(head, it)
    if n is not None and n < threshold:
        n_workers = 1
    if n == 0:
        return
    step = chunk or chunk_size(n, n_workers)
    window = QUEUE_PER_WORKER * n_workers
    with contextlib.ExitStack() as stack:
        bar = None
        if desc is not None:
            from opticsfree.utils.progress import progress

            bar = stack.enter_context(progress(transient=True))
            task = bar.add_task(desc, total=n)
        pool = stack.enter_context(process_pool(n_workers))

        def collect(size: int, future: Future) -> Sequence[R]:
            results = future.result()
            if len(results) != size:
                raise ValueError(f"{getattr(fn, '__name__', fn)!s} returned {len(results)} results "
                                 f"for a chunk of {size} items")
            if bar is not None:
                bar.advance(task, size)
            if on_progress is not None:
                on_progress(size)
            return results

        pending: deque[tuple[int, Future]] = deque()
        for part in iter(lambda: list(itertools.islice(it, step)), []):
            pending.append((len(part), pool.submit(fn, part)))
            if ordered:
                while pending and (len(pending) >= window or pending[0][1].done()):
                    yield from collect(*pending.popleft())
            else:
                if len(pending) >= window:
                    wait([f for _, f in pending], return_when=FIRST_COMPLETED)
                for done in [p for p in pending if p[1].done()]:
                    pending.remove(done)
                    yield from collect(*done)
        if ordered:
            while pending:
                yield from collect(*pending.popleft())
        else:
            size_of = {f: size for size, f in pending}
            for f in as_completed(size_of):
                yield from collect(size_of[f], f)


#: What to do without Ray (``--executor ray``: the optional extra ``scale``).
RAY_HINT = "--executor ray needs Ray: pip install 'opticsfree[scale]' (or pip install ray)"
#: The executors of the commands that fan work out (``run``, ``camera sweep``, ``tune``).
EXECUTOR_NAMES = ("local", "ray")


def check_executor(executor: str, address: str | None) -> None:
    """Check an ``--executor``/``--address`` pair (every command that fans work out).

    Raises:
        ConfigError: an unknown executor, or an address without ``ray`` (one line).
    """
    if executor not in EXECUTOR_NAMES:
        raise ConfigError(f"--executor: expected one of {', '.join(EXECUTOR_NAMES)}, got {executor!r}")
    if address is not None and executor != "ray":
        raise ConfigError("--address joins a Ray cluster: it needs --executor ray")


class CallTimedOut(Exception):
    """:func:`call_with_timeout`: the call did not return in time."""


def call_with_timeout(fn: Callable[[], T], timeout_s: float) -> T:
    """``fn()`` in a daemon thread, waited for at most ``timeout_s`` seconds.

    A call that never returns (a device that stops answering) cannot hang the caller: the
    thread is left behind and dies with the process.

    Returns:
        What ``fn`` returned.

    Raises:
        CallTimedOut: ``fn`` did not return within ``timeout_s``.
        BaseException: whatever ``fn`` raised, re-raised here.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise CallTimedOut(f"no answer within {timeout_s} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def ray_session(address: str | None = None) -> Any:
    """The ``ray`` module, connected: to the Ray instance this process already runs, to the
    cluster at ``address``, or to a new local instance with this machine's cores.

    Raises:
        OpticsfreeError: Ray is not installed (one line saying how to install it).
    """
    from opticsfree.errors import ConfigError

    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_HINT) from None
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else os.cpu_count(), include_dashboard=False,
                 logging_level="ERROR", log_to_driver=True)
    return ray


def ray_thread_env(threads: int) -> dict[str, Any]:
    """Ray task options that give the worker ``threads`` OpenMP/BLAS threads, as this process
    has (Ray would otherwise set them to the task's CPUs, and a BLAS reduction over another
    number of threads can differ in the last bits)."""
    n = str(threads)
    return {"runtime_env": {"env_vars": {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}}}


def _with_threads(fn: Callable[..., Any], threads: int, *args: Any) -> Any:
    import torch

    torch.set_num_threads(threads)
    return fn(*args)


class RayTasks:
    """Ray tasks started one by one and collected as they finish: the one Ray mechanism of
    :func:`ray_map` and the study's ``ray`` executor.

    Every task runs ``fn(*args)`` with this process's torch and OpenMP/BLAS threads (so its
    numbers equal an in-process call's), and is retried 3 times when its worker dies. Used as a
    context manager: leaving it by an exception or Ctrl-C cancels the tasks still running.

    Args:
        address: a Ray cluster (None: see :func:`ray_session`).
    """

    def __init__(self, address: str | None = None):
        import torch

        self.ray = ray_session(address)
        self.threads = torch.get_num_threads()
        self._task = self.ray.remote(max_retries=3)(_with_threads)
        self.inflight: dict[Any, Any] = {}

    def put(self, value: Any) -> Any:
        """``value`` in Ray's object store once (an argument shared by many tasks)."""
        return self.ray.put(value)

    def submit(self, key: Any, fn: Callable[..., Any], *args: Any, num_cpus: float = 1,
               num_gpus: float = 0) -> None:
        """Start ``fn(*args)`` (a module-level function) as a task known by ``key``."""
        ref = self._task.options(num_cpus=num_cpus, num_gpus=num_gpus, **ray_thread_env(self.threads)).remote(
            fn, self.threads, *args)
        self.inflight[ref] = key

    def next_done(self) -> tuple[Any, Any]:
        """``(key, result)`` of the next task to finish; a task's exception is raised as itself."""
        ready, _ = self.ray.wait(list(self.inflight), num_returns=1)
        ref = ready[0]
        key = self.inflight.pop(ref)
        try:
            return key, self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            raise (cause if isinstance(cause, Exception) else e) from None

    def __enter__(self) -> "RayTasks":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None:
            for ref in self.inflight:
                self.ray.cancel(ref, force=True)


def ray_map(fn: Callable[..., Any], calls: list[tuple], *, address: str | None = None,
            num_cpus: float = 1, shared: tuple = ()) -> Iterator[tuple[int, Any]]:
    """Run ``fn(*shared, *call)`` for every ``call`` as Ray tasks (:class:`RayTasks`), yielding
    ``(index, result)`` as each finishes (not in order); ``shared`` arguments (a dataset) are put
    in Ray's object store once.

    Args:
        fn: a module-level function (Ray pickles it by reference).
        calls: the per-task arguments.
        address: a Ray cluster (None: see :func:`ray_session`).
        num_cpus: CPUs each task asks for.
        shared: arguments common to every call, passed first.
    """
    with RayTasks(address) as tasks:
        refs = [tasks.put(x) for x in shared]
        for i, call in enumerate(calls):
            tasks.submit(i, fn, *refs, *call, num_cpus=num_cpus)
        while tasks.inflight:
            yield tasks.next_done()
