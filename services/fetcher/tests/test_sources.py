import hashlib
from pathlib import Path

import pytest
from csc_common.errors import StageFailed
from csc_fetcher.sources import LocalSource, ObjectInfo, RetryPolicy, VerifyError, verify
from csc_fetcher.transfer import Item, copy, is_complete, write_atomic


def test_object_md5_only_for_plain_etags() -> None:
    md5 = hashlib.md5(b"abc").hexdigest()
    assert ObjectInfo("k", 3, f'"{md5}"').md5 == md5
    assert ObjectInfo("k", 3, '"0123456789abcdef0123456789abcdef-4"').md5 is None  # multipart upload
    assert ObjectInfo("k", 3, None).md5 is None


def test_verify_length_and_md5() -> None:
    data = b"hello world"
    good = ObjectInfo("k", len(data), hashlib.md5(data).hexdigest())
    verify(data, good, content_length=len(data))
    with pytest.raises(VerifyError, match="short read"):
        verify(data[:5], good, content_length=len(data))
    with pytest.raises(VerifyError, match="listed size"):
        verify(data[:5], good)
    with pytest.raises(VerifyError, match="MD5"):
        verify(b"hellO world", good)
    verify(b"hellO world", ObjectInfo("k", len(data), "x" * 32 + "-2"))  # no plain MD5: length only


def test_backoff_is_capped_full_jitter() -> None:
    p = RetryPolicy(attempts=5, base_s=0.1, cap_s=1.0)
    for attempt in range(8):
        d = [p.delay(attempt) for _ in range(50)]
        assert all(0 <= x <= min(1.0, 0.1 * 2**attempt) for x in d)
        assert len(set(d)) > 1


def test_local_source_lists_by_string_prefix_and_reads_missing_as_none(tmp_path: Path) -> None:
    for k in ("a/s0/0/0/0", "a/s0/0/0/1", "a/s0/0/1/0", "a/s0/0/10/0", "b/x"):
        (tmp_path / k).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / k).write_bytes(k.encode())
    src = LocalSource(tmp_path)
    assert [o.key for o in src.list("a/s0/0/0/")] == ["a/s0/0/0/0", "a/s0/0/0/1"]
    assert [o.key for o in src.list("a/s0/0/1/")] == ["a/s0/0/1/0"]
    assert list(src.list("nope/")) == []
    assert src.get("a/s0/9/9/9") is None
    with pytest.raises(StageFailed, match="changed while fetching"):
        src.get("b/x", ObjectInfo("b/x", 99))


def test_copy_skips_complete_and_reports_failures(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "ok").write_bytes(b"12345")
    src = LocalSource(tmp_path / "src")
    dest = tmp_path / "dest"
    items = [
        Item("ok", dest / "ok", ObjectInfo("ok", 5)),
        Item("meta", dest / "meta", data=b"{}"),
        Item("gone", dest / "gone", ObjectInfo("gone", 3)),
    ]
    r = copy(items, src, workers=4, batch_size=256)
    assert (r.fetched, r.missing, r.skipped) == (2, 1, 0)
    assert all(is_complete(i) for i in items[:2]) and not (dest / "gone").exists()
    r = copy(items, src, workers=4, batch_size=256)
    assert (r.fetched, r.skipped) == (0, 2)
    bad = [Item("ok", dest / "ok2", ObjectInfo("ok", 6))]  # size disagrees with the source: never accepted
    with pytest.raises(StageFailed, match="1 object.*rerun"):
        copy(bad, src, workers=2, batch_size=1)
    assert not (dest / "ok2").exists()
    assert not [p for p in dest.iterdir() if p.name.endswith(".csc-part")]


def test_write_atomic_leaves_no_partial_file(tmp_path: Path) -> None:
    write_atomic(tmp_path / "f", b"x")
    assert (tmp_path / "f").read_bytes() == b"x" and [p.name for p in tmp_path.iterdir()] == ["f"]
