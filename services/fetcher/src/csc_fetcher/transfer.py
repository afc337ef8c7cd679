"""The copy engine: many objects, a thread pool, verified bytes, atomic files, resume.

Each object is written to a temporary sibling (``.<name>.<random>.csc-part``)
and renamed into place only after its bytes were verified, so a file that
exists under its final name is complete. A rerun therefore skips every file
already present with the expected size, and a killed run leaves at most some
``*.csc-part`` files, which the next run removes.
"""

import logging
import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from csc_common.errors import StageFailed
from csc_common.log import progress_bar

from csc_fetcher.plan import effective_batch
from csc_fetcher.sources import ObjectInfo, Source

log = logging.getLogger("csc.fetch")
PART = ".csc-part"


@dataclass(frozen=True)
class Item:
    """One object to place at ``dest``: fetched from ``key``, or ``data`` given inline (metadata)."""

    key: str
    dest: Path
    info: ObjectInfo | None = None
    data: bytes | None = None

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        return self.info.size if self.info else 0


@dataclass
class Result:
    fetched: int = 0
    skipped: int = 0
    missing: int = 0
    bytes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def is_complete(item: Item) -> bool:
    """A final-named file with the expected size (inline items: the same bytes) is complete."""
    try:
        st = item.dest.stat()
    except OSError:
        return False
    if item.data is not None:
        return st.st_size == len(item.data) and item.dest.read_bytes() == item.data
    return item.info is None or st.st_size == item.info.size


def write_atomic(dest: Path, data: bytes) -> None:
    """Write to a temp sibling then rename: the final name only ever holds whole files."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:10]}{PART}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_parts(roots: Iterable[Path]) -> int:
    """Delete ``*.csc-part`` leftovers of a killed run under ``roots``."""
    n = 0
    for root in roots:
        if not root.exists():
            continue
        for dirpath, _, files in os.walk(root):
            for f in files:
                if f.endswith(PART):
                    (Path(dirpath) / f).unlink(missing_ok=True)
                    n += 1
    if n:
        log.info("removed %d partial file(s) left by an interrupted run", n)
    return n


def copy(items: Sequence[Item], source: Source, *, workers: int, batch_size: int, desc: str = "fetch") -> Result:
    """Copy ``items`` with ``workers`` threads; complete files are skipped, failures collected.

    Raises StageFailed (exit 1, rerun resumes) when any object could not be
    fetched and verified after the source's retries.
    """
    result = Result()
    todo = []
    for it in items:
        if is_complete(it):
            result.skipped += 1
        else:
            todo.append(it)
    if not todo:
        return result
    lock = threading.Lock()
    total = sum(it.size for it in todo)
    bar = progress_bar(desc=desc, total=total, unit="B", unit_scale=True, unit_divisor=1024)
    done = [0]

    def one(it: Item) -> None:
        data = it.data if it.data is not None else source.get(it.key, it.info)
        with lock:
            if data is None:  # a missing chunk key means fill value, not an error
                result.missing += 1
            else:
                result.fetched += 1
                result.bytes += len(data)
        if data is not None:
            write_atomic(it.dest, data)
        with lock:
            done[0] += 1
            bar.update(it.size)
            bar.set_postfix_str(f"{done[0]}/{len(todo)} objects", refresh=False)

    stop = threading.Event()

    def batch(chunk: Sequence[Item]) -> None:
        for it in chunk:
            if stop.is_set():
                return
            try:
                one(it)
            except Exception as exc:  # noqa: BLE001 - collected and re-raised below, never swallowed
                with lock:
                    result.failed.append((it.key, str(exc)))

    b = effective_batch(batch_size, len(todo), workers)
    batches = [todo[i : i + b] for i in range(0, len(todo), b)]
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch")
    try:
        for fut in as_completed([pool.submit(batch, c) for c in batches]):
            fut.result()
    except BaseException:  # Ctrl-C: stop promptly; whole files stay, the rest is fetched by a rerun
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
    if result.failed:
        key, msg = result.failed[0]
        raise StageFailed(
            f"{len(result.failed)} object(s) could not be fetched (first: {key}: {msg}); "
            "rerun the same command to resume"
        )
    return result
