"""Temp folders carry their owner (pid, start time, host), so a later run sweeps a killed run's, and only those."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from csc_common.fsutil import is_stale, make_temp_dir, owner_tag, sweep_stale, temp_dir

MAKE = "import sys; from csc_common.fsutil import make_temp_dir; print(make_temp_dir(sys.argv[1], '.out.zarr.'), flush=True)"


def test_a_gone_owner_is_swept_a_live_one_is_kept(tmp_path: Path) -> None:
    gone = Path(
        subprocess.run([sys.executable, "-c", MAKE, str(tmp_path)], capture_output=True, text=True).stdout.strip()
    )
    assert gone.is_dir() and gone.name.startswith(".out.zarr.p")  # its maker exited without cleaning up
    live = subprocess.Popen(
        [sys.executable, "-c", MAKE + "; sys.stdin.read()", str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert live.stdout is not None
    theirs = Path(live.stdout.readline().strip())
    try:
        assert not gone.exists() and theirs.is_dir()  # making a temp folder swept the dead one
        mine = make_temp_dir(tmp_path, ".out.zarr.")
        assert mine.name.startswith(".out.zarr." + owner_tag() + ".")
        assert sweep_stale(tmp_path, ".out.zarr.") == []
        assert theirs.is_dir() and mine.is_dir()
    finally:
        live.communicate("")
    assert sweep_stale(tmp_path, ".out.zarr.") == [theirs]
    assert mine.is_dir()


def test_what_is_not_swept(tmp_path: Path) -> None:
    pid = os.getpid()
    tag = owner_tag()
    host = tag.rsplit("-h", 1)[1]
    reused = f".o.p{pid}-t1-h{host}.abc.tmp"  # our pid, another start time: its owner is gone
    assert is_stale(reused, ".o.")
    assert not is_stale(f".o.{tag}.abc.tmp", ".o.")  # ourselves
    assert not is_stale(f".o.p{pid}-t1-h00000000.abc.tmp", ".o.")  # another host's: cannot be checked here
    assert not is_stale(".o.abc.tmp", ".o.")  # no owner in the name (made by something else)
    assert not is_stale(reused, ".other.")
    for name in (reused, ".o.abc.tmp", f".other.p{pid}-t1-h{host}.x.tmp"):
        (tmp_path / name).mkdir()
    assert [p.name for p in sweep_stale(tmp_path, ".o.")] == [reused]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".o.abc.tmp", f".other.p{pid}-t1-h{host}.x.tmp"])
    assert sweep_stale(tmp_path / "missing", ".o.") == []


def test_temp_dir_is_removed_on_any_exit(tmp_path: Path) -> None:
    with temp_dir(tmp_path, ".scratch-") as d:
        (d / "f").write_text("x")
    assert not d.exists()
    with pytest.raises(KeyboardInterrupt), temp_dir(tmp_path, ".scratch-") as d:
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
