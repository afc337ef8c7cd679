"""Each zip-safety rule on a tiny hand-made zip, the env parsing of the limits, and reporting order."""

import stat
import zipfile

import pytest
from csc_common.errors import InputError
from csc_common.submission.zipsafety import ZIP, ZipLimits, ZipProblem, iter_zip_problems, zip_problems

BIG = b"0" * 3_000_000  # > 1 MiB, deflates about 1000:1


def _infos(path, members, *, encrypted=()):
    """Write members (name, data, unix mode or None) to a zip at ``path``; return its infolist read back."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
            if name in encrypted:
                info.flag_bits |= 0x1  # written to the central directory on close
    with zipfile.ZipFile(path) as zf:
        return zf.infolist()


def _one(tmp_path, members, limits=ZipLimits(), **kw):
    return zip_problems(_infos(tmp_path / "t.zip", members, **kw), limits)


def test_a_clean_zip_has_no_problems(tmp_path):
    members = [
        (".zgroup", b"{}", None),
        ("crop1/", b"", stat.S_IFDIR | 0o755),
        ("crop1/mito/.zarray", b"{}", stat.S_IFREG | 0o644),
        ("crop1/mito/0.0.0", BIG[:1000], None),
    ]
    assert _one(tmp_path, members) == []


@pytest.mark.parametrize(
    ("name", "mode", "message"),
    [
        ("link", stat.S_IFLNK | 0o777, "member 'link' is a symlink, which is not allowed"),
        (
            "fifo",
            stat.S_IFIFO | 0o644,
            "member 'fifo' is a special file (device, fifo or socket), which is not allowed",
        ),
        ("../x", None, "member '../x' would extract outside the target directory ('..')"),
        ("crop1/../../x", None, "member 'crop1/../../x' would extract outside the target directory ('..')"),
        ("/abs", None, "member '/abs' has an absolute path"),
        ("C:/x", None, "member 'C:/x' has an absolute path (drive letter)"),
        ("a\\..\\..\\x", None, r"member 'a\\..\\..\\x' has a NUL or backslash in its name"),
        ("./", None, "member './' resolves to the extraction folder itself"),
        (".", None, "member '.' resolves to the extraction folder itself"),
    ],
)
def test_each_member_rule_names_the_member(tmp_path, name, mode, message):
    assert _one(tmp_path, [("ok", b"x", None), (name, b"x", mode)]) == [ZipProblem(name, message)]


def test_nul_in_a_name(tmp_path):
    # zipfile cuts names at NUL when reading, so only a ZipInfo built by hand can carry one.
    info = zipfile.ZipInfo("a")
    info.filename = "a\x00/../../x"
    assert zip_problems([info], ZipLimits()) == [
        ZipProblem(
            info.filename,
            r"member 'a\x00/../../x' has a NUL or "
            "backslash in its name",
        )
    ]


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_duplicates_including_the_same_path_spelled_differently(tmp_path):
    problems = _one(tmp_path, [("a", b"x", None), ("a", b"y", None), ("d/b", b"x", None), ("d//b", b"y", None)])
    assert problems == [ZipProblem("a", "member 'a' appears twice"), ZipProblem("d//b", "member 'd//b' appears twice")]


def test_encrypted_flag_bit(tmp_path):
    assert _one(tmp_path, [("ok", b"x", None), ("secret", b"x", None)], encrypted={"secret"}) == [
        ZipProblem("secret", "member 'secret' is encrypted")
    ]


def test_member_count_limit(tmp_path):
    members = [(f"m{i}", b"x", None) for i in range(3)]
    assert _one(tmp_path, members, ZipLimits(max_members=3)) == []
    assert _one(tmp_path, members, ZipLimits(max_members=2)) == [
        ZipProblem(ZIP, "3 members exceed the limit of 2 (CSC_MAX_ZIP_MEMBERS)")
    ]


def test_total_uncompressed_size_limit(tmp_path):
    members = [("a", b"x" * 60, None), ("b", b"y" * 40, None)]
    assert _one(tmp_path, members, ZipLimits(max_uncompressed_size=100)) == []
    assert _one(tmp_path, members, ZipLimits(max_uncompressed_size=99)) == [
        ZipProblem(ZIP, "uncompressed size 100 bytes exceeds the limit of 99 bytes (MAX_UNCOMPRESSED_SIZE)")
    ]
    huge = zipfile.ZipInfo("a")  # a 60 GiB member, as its header claims: nothing is read
    huge.file_size = huge.compress_size = 60 * 1024**3
    assert zip_problems([huge], ZipLimits()) == [
        ZipProblem(
            ZIP,
            "uncompressed size 64424509440 bytes (60.00 GiB) "
            "exceeds the limit of 53687091200 bytes (50.00 GiB) "
            "(MAX_UNCOMPRESSED_SIZE)",
        )
    ]


def test_compression_ratio_limit(tmp_path):
    [problem] = _one(tmp_path, [("bomb", BIG, None)], ZipLimits(max_compression_ratio=50))
    assert problem.where == "bomb"
    assert problem.message.startswith("member 'bomb' compression ratio ")
    assert problem.message.endswith(":1 exceeds 50:1 (CSC_MAX_COMPRESSION_RATIO)")
    assert _one(tmp_path, [("bomb", BIG, None)]) == []  # the default 1100:1 is above what deflate reaches
    assert _one(tmp_path, [("small", BIG[: 1 << 20], None)], ZipLimits(max_compression_ratio=50)) == []  # <= 1 MiB


def test_every_problem_is_reported_in_order_and_lazily(tmp_path):
    infos = _infos(
        tmp_path / "t.zip",
        [("../x", b"x", None), ("link", b"x", stat.S_IFLNK | 0o777), ("bomb", BIG, None)],
        encrypted={"link"},
    )
    limits = ZipLimits(max_members=1, max_uncompressed_size=10, max_compression_ratio=50)
    problems = zip_problems(infos, limits)
    assert [p.where for p in problems] == [ZIP, ZIP, "../x", "link", "link", "bomb"]
    assert "symlink" in problems[3].message and "encrypted" in problems[4].message
    assert next(iter_zip_problems(infos, limits)) == problems[0]
    where, message = problems[2]  # a plain (where, message) pair
    assert (where, message) == ("../x", "member '../x' would extract outside the target directory ('..')")


def test_limits_from_env(monkeypatch):
    for name in ("MAX_UNCOMPRESSED_SIZE", "CSC_MAX_ZIP_MEMBERS", "CSC_MAX_COMPRESSION_RATIO"):
        monkeypatch.delenv(name, raising=False)
    assert ZipLimits.from_env() == ZipLimits() == ZipLimits(50 * 1024**3, 2_000_000, 1100.0)
    monkeypatch.setenv("MAX_UNCOMPRESSED_SIZE", "1e3")
    monkeypatch.setenv("CSC_MAX_ZIP_MEMBERS", "7.9")
    monkeypatch.setenv("CSC_MAX_COMPRESSION_RATIO", " ")  # blank: the default
    limits = ZipLimits.from_env()
    assert limits == ZipLimits(1000, 7, 1100.0) and isinstance(limits.max_members, int)
    monkeypatch.setenv("CSC_MAX_COMPRESSION_RATIO", "2.5")
    assert ZipLimits.from_env().max_compression_ratio == 2.5


@pytest.mark.parametrize(
    ("name", "raw", "match"),
    [
        ("MAX_UNCOMPRESSED_SIZE", "lots", "MAX_UNCOMPRESSED_SIZE: not a number: 'lots'"),
        ("CSC_MAX_ZIP_MEMBERS", "0", "CSC_MAX_ZIP_MEMBERS: must be > 0, got '0'"),
        ("CSC_MAX_COMPRESSION_RATIO", "inf", "CSC_MAX_COMPRESSION_RATIO: must be > 0"),
        ("CSC_MAX_COMPRESSION_RATIO", "-3", "CSC_MAX_COMPRESSION_RATIO: must be > 0"),
    ],
)
def test_bad_limit_values_are_refused(monkeypatch, name, raw, match):
    monkeypatch.setenv(name, raw)
    with pytest.raises(InputError, match=match):
        ZipLimits.from_env()


def test_a_file_that_is_also_a_folder(tmp_path):
    members = [("crop1/mito", b"x", None), ("crop1/mito/.zarray", b"{}", None), ("crop1/ecs/", b"", None)]
    members += [("crop1/ecs/0", b"x", None), ("crop1/ecs/0/0/0", b"x", None), ("crop1//mito2", b"x", None)]
    assert _one(tmp_path, members) == [
        ZipProblem("crop1/mito", "member 'crop1/mito' is a file, but other members lie inside a folder of that name"),
        ZipProblem("crop1/ecs/0", "member 'crop1/ecs/0' is a file, but other members lie inside a folder of that name"),
    ]
    assert _one(tmp_path, [("a/", b"", None), ("a/b", b"x", None)]) == []  # a folder entry is no clash
