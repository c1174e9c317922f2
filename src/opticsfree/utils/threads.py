"""Thread control for code that mixes several OpenMP runtimes (torch, scikit-learn)."""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def single_threaded_openmp() -> Iterator[None]:
    """Run every OpenMP runtime of the process (torch's, scikit-learn's) on one thread.

    Used around evaluation and Bayes, which mix torch inference and kNN search with
    scikit-learn (t-SNE). Two OpenMP runtimes in one process spin against each other on a loaded 2-core
    machine: evaluating a tiny run (120-point t-SNE) measured 5.6-27 s with only
    scikit-learn's runtime limited and 1.6-3.5 s with all runtimes on one thread; the torch
    inference done there is small.
    """
    try:
        import sklearn.manifold  # noqa: F401 - load the runtime so threadpoolctl sees it
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="openmp"):
        yield
