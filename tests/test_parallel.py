"""The one fan-out (utils.parallel.map_chunks) and what is built on it: every site gives the same
results and the same files in this process and in worker processes."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from opticsfree.utils import parallel
from opticsfree.utils.parallel import CHUNK, QUEUE_PER_WORKER, chunk_size, map_chunks

SRC = Path(__file__).resolve().parents[1] / "src" / "opticsfree"


def _squares(chunk: list[int]) -> list[int]:
    return [x * x for x in chunk]


def _pids(chunk: list[int]) -> list[int]:
    return [os.getpid()] * len(chunk)


def _fails_on_7(chunk: list[int]) -> list[int]:
    if 7 in chunk:
        raise ValueError("item 7 is bad")
    return chunk


def _one_short(chunk: list[int]) -> list[int]:
    return chunk[1:]


# --------------------------------------------------------------------------- map_chunks

@pytest.mark.parametrize("workers", [1, 2])
def test_results_keep_input_order_and_equal_the_in_process_ones(workers):
    items = list(range(1000))
    want = [x * x for x in items]
    got = list(map_chunks(_squares, items, workers=workers, min_parallel=0))
    assert got == want
    # a generator (length unknown) and explicit small chunks: the same
    assert list(map_chunks(_squares, iter(items), workers=workers, min_parallel=0, chunk=7)) == want
    # unordered: the same results, chunk by chunk as they finish
    assert sorted(map_chunks(_squares, items, workers=workers, min_parallel=0, chunk=7,
                             ordered=False)) == sorted(want)


def test_workers_run_in_other_processes_only_when_there_are_enough_items():
    me = os.getpid()
    assert set(map_chunks(_pids, range(50), workers=2, min_parallel=0)) - {me}
    assert set(map_chunks(_pids, list(range(50)), workers=2, min_parallel=51)) == {me}
    assert set(map_chunks(_pids, iter(range(50)), workers=2, min_parallel=51)) == {me}
    assert set(map_chunks(_pids, range(50), workers=1, min_parallel=0)) == {me}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("ordered", [True, False])
def test_progress_sums_to_the_number_of_items(workers, ordered):
    seen: list[int] = []
    out = list(map_chunks(_squares, range(1000), workers=workers, min_parallel=0,
                          on_progress=seen.append, ordered=ordered))
    assert len(out) == 1000 and sum(seen) == 1000
    assert len(seen) == -(-1000 // chunk_size(1000, workers))  # one call per chunk


@pytest.mark.parametrize("workers", [1, 2])
def test_a_workers_exception_is_raised_and_stops_the_rest(workers):
    read = []

    def items():
        for i in range(100_000):
            read.append(i)
            yield i

    with pytest.raises(ValueError, match="item 7 is bad"):
        list(map_chunks(_fails_on_7, items(), workers=workers, min_parallel=0, chunk=5))
    # the input stops being read: at most a full queue of chunks past the bad one
    assert len(read) <= (QUEUE_PER_WORKER * workers + 2) * 5


def test_memory_stays_bounded_for_a_streamed_input():
    read = []

    def items():
        for i in range(1_000_000):
            read.append(i)
            yield i

    it = map_chunks(_squares, items(), workers=2, min_parallel=0, chunk=10)
    assert next(it) == 0
    assert len(read) <= QUEUE_PER_WORKER * 2 * 10
    it.close()


def test_empty_input_and_bad_arguments():
    calls: list[int] = []
    assert list(map_chunks(_squares, [], workers=2, on_progress=calls.append)) == []
    assert list(map_chunks(_squares, iter([]), workers=2, min_parallel=0)) == []
    assert calls == []
    with pytest.raises(ValueError, match="workers must be >= 0"):
        map_chunks(_squares, [1], workers=-1)  # at once, not when iterated
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        map_chunks(_squares, [1], chunk=0)
    with pytest.raises(ValueError, match="returned 4 results for a chunk of 5"):
        list(map_chunks(_one_short, range(5), workers=1))


def test_the_chunking_rule():
    assert chunk_size(None, 8) == CHUNK
    assert chunk_size(10_000, 2) == CHUNK
    assert chunk_size(1000, 8) == 125        # every worker gets a share
    assert chunk_size(3, 8) == 1 and chunk_size(1, 1) == 1


def test_process_pool_is_called_only_by_the_fan_out():
    """Every fan-out goes through map_chunks: process_pool( appears in utils/parallel.py only."""
    hits = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "utils" / "parallel.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\bprocess_pool\(", line):
                hits.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert hits == [], hits


# --------------------------------------------------------------------------- the sites

def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _same_set(a: Path, b: Path) -> None:
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    ma, mb = json.loads(fa.pop("manifest.json")), json.loads(fb.pop("manifest.json"))
    ma.pop("created", None), mb.pop("created", None)
    assert ma == mb
    assert fa == fb, [k for k in fa if fa[k] != fb[k]]


def test_simulate_writes_the_same_bytes_in_worker_processes(tmp_path, monkeypatch):
    from opticsfree.captures.simulate import simulate_capture_set
    from opticsfree.data import load_dataset
    from opticsfree.optics import load_camera_config

    monkeypatch.setattr(parallel, "MIN_PARALLEL", 0)  # the pool even for a tiny set
    cam = load_camera_config("seed").replace(display={"supersample": 1}, sensor={"supersample": 1})
    ds = load_dataset("digits")
    a = simulate_capture_set(ds, cam, tmp_path / "a", limit=12, frames=2, seed=4, batch=5, workers=1)
    b = simulate_capture_set(ds, cam, tmp_path / "b", limit=12, frames=2, seed=4, batch=5, workers=2)
    _same_set(a, b)
    assert not [p for p in b.rglob("*") if p.name.endswith(".tmp")]


def test_written_images_get_the_usual_permissions_and_leave_no_temporary_file(tmp_path):
    from opticsfree.captures.writer import ImageJob, write_images

    jobs = [ImageJob(str(tmp_path / "d" / f"{i}.png"), np.full((4, 4, 1), i, np.uint8)) for i in range(3)]
    seen: list[int] = []
    assert write_images(jobs, workers=1, on_progress=seen.append) == 3 and sum(seen) == 3
    mask = os.umask(0)
    os.umask(mask)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["0.png", "1.png", "2.png"]
    assert all(stat.S_IMODE(os.stat(j.path).st_mode) == 0o666 & ~mask for j in jobs)


def test_apply_links_originals_atomically_leaving_the_source_mode(tmp_path):
    from opticsfree.reconstruction.apply import _link_or_copy

    src = tmp_path / "src.png"
    src.write_bytes(b"png")
    src.chmod(0o444)
    dst = tmp_path / "out" / "sub" / "dst.png"
    _link_or_copy(src, dst)
    assert dst.read_bytes() == b"png" and os.path.samefile(src, dst)
    assert stat.S_IMODE(os.stat(src).st_mode) == 0o444
    assert sorted(p.name for p in dst.parent.iterdir()) == ["dst.png"]


def test_call_with_timeout_returns_reraises_and_gives_up():
    import threading

    from opticsfree.utils.parallel import CallTimedOut, call_with_timeout

    assert call_with_timeout(lambda: 7, 1.0) == 7
    with pytest.raises(ZeroDivisionError):
        call_with_timeout(lambda: 1 / 0, 1.0)
    never = threading.Event()
    with pytest.raises(CallTimedOut):
        call_with_timeout(never.wait, 0.05)                  # a call that never returns
    never.set()


@pytest.mark.parametrize("executor, address, needle", [
    ("dask", None, "--executor: expected one of local, ray, got 'dask'"),
    ("local", "ray://head:10001", "--address joins a Ray cluster: it needs --executor ray"),
])
def test_check_executor_is_one_line(executor, address, needle):
    from opticsfree.errors import ConfigError
    from opticsfree.utils.parallel import check_executor

    check_executor("ray", "ray://head:10001")
    check_executor("local", None)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        check_executor(executor, address)

