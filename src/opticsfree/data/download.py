"""Download a dataset file with a progress bar, verify it, and write it atomically."""

from __future__ import annotations

import hashlib
import socket
import urllib.error
import urllib.request
from pathlib import Path

from opticsfree.errors import DataError
from opticsfree.utils.io import atomic_path
from opticsfree.utils.progress import progress

#: Seconds to wait for the server before giving up (offline machines fail fast).
TIMEOUT_S = 30.0
_CHUNK = 1 << 20


def download_file(url: str, dest: str | Path, md5: str | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically, checking the MD5 digest when given.

    The file is streamed to a temporary name next to ``dest`` and renamed only after the
    whole body arrived and its digest matched, so ``dest`` is either complete and verified or
    absent.

    Args:
        url: http(s) address.
        dest: final file path (parent directories are created).
        md5: expected lowercase hex MD5 digest of the file, or None to skip the check.

    Returns:
        ``dest`` as a Path.

    Raises:
        DataError: the download failed (no network, HTTP error, truncated body) or the
            digest did not match.
    """
    dest = Path(dest)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp, atomic_path(dest) as tmp:
            total = resp.headers.get("Content-Length")
            total_n = int(total) if total and total.isdigit() else None
            received = 0
            with progress(transient=True) as bar, open(tmp, "wb") as f:
                task = bar.add_task(f"downloading {dest.name}", total=total_n)
                while block := resp.read(_CHUNK):
                    f.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(task, advance=len(block))
            if total_n is not None and received != total_n:
                raise DataError(f"download of {url} was truncated ({received} of {total_n} bytes)")
            if md5 is not None and digest.hexdigest() != md5.lower():
                raise DataError(f"download of {url} is corrupt: md5 {digest.hexdigest()}, expected {md5}")
    except urllib.error.HTTPError as e:
        raise DataError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DataError(f"cannot download {url}: {e.reason}") from None
    except (socket.timeout, TimeoutError, ConnectionError) as e:
        raise DataError(f"cannot download {url}: {type(e).__name__}: {e}") from None
    return dest
