"""Atomic file and directory writes, and temp folders a later run can sweep.

A stage writes into a temporary sibling and renames it into place, so a
killed run never leaves a half-written file that a later run would trust.

Every temp folder a stage makes (`make_temp_dir`, `temp_dir`, `atomic_dir`)
carries its owner in its name: ``<prefix>p<pid>-t<start>-h<host>.<random>.tmp``,
where ``start`` is the process's start time (so a reused pid is not taken for
the owner) and ``host`` a hash of the host name. A process killed with SIGKILL
cannot clean up, so making a temp folder first sweeps the folders of the same
prefix whose owner is gone; folders of live processes, and of other hosts or
containers (whose processes cannot be seen from here), are left alone.
"""

import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_OWNER = re.compile(r"p(?P<pid>\d+)-t(?P<start>\d+)-h(?P<host>[0-9a-f]{8})\.[^/]*\.tmp")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder plus rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are shared with other users
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


# ---------------------------------------------------------------- temp folders with an owner
def _start_ticks(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot); None if it is gone or a zombie.

    0 where the system has no /proc (the pid alone then decides).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3, starttime field 22
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _host_hash() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def owner_tag() -> str:
    """``p<pid>-t<start>-h<host>``: who made a temp folder, as `sweep_stale` reads it back."""
    pid = os.getpid()
    return f"p{pid}-t{_start_ticks(pid) or 0}-h{_host_hash()}"


def is_stale(name: str, prefix: str) -> bool:
    """Whether ``name`` is a temp folder of ``prefix`` whose owner process (on this host) is gone."""
    m = _OWNER.fullmatch(name[len(prefix) :]) if name.startswith(prefix) else None
    if m is None or m["host"] != _host_hash():
        return False
    return _start_ticks(int(m["pid"])) not in (int(m["start"]), 0)


def sweep_stale(parent: str | Path, prefix: str) -> list[Path]:
    """Remove the temp folders of ``prefix`` in ``parent`` left by processes that are gone; returns them."""
    try:
        names = [e.name for e in os.scandir(parent) if e.name.startswith(prefix)]
    except OSError:
        return []
    gone = [Path(parent) / n for n in names if is_stale(n, prefix)]
    for d in gone:
        shutil.rmtree(d, ignore_errors=True)
    return gone


def make_temp_dir(parent: str | Path, prefix: str) -> Path:
    """A new, empty temp folder ``<prefix><owner>.<random>.tmp`` in ``parent`` (after sweeping stale ones).

    The caller removes it (or renames it into place); `temp_dir` does the removing.
    """
    p = Path(parent)
    p.mkdir(parents=True, exist_ok=True)
    sweep_stale(p, prefix)
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{owner_tag()}.", suffix=".tmp", dir=p))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs are shared with other users
    return tmp


@contextmanager
def temp_dir(parent: str | Path, prefix: str) -> Iterator[Path]:
    """`make_temp_dir`, removed with everything in it on any exit of the block."""
    tmp = make_temp_dir(parent, prefix)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp folder that replaces ``path`` when the block succeeds.

    On an exception the temp folder is removed and ``path`` is untouched; a
    killed run's temp folder is swept by the next run (`make_temp_dir`).
    """
    p = Path(path)
    tmp = make_temp_dir(p.parent, f".{p.name}.")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if p.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(p)
        old = tmp.with_name(tmp.name.removesuffix(".tmp") + "-old.tmp")  # swept like tmp if killed right here
        shutil.rmtree(old, ignore_errors=True)
        os.replace(p, old)
        os.replace(tmp, p)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, p)


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
