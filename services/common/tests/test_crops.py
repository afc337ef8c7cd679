import pytest
from csc_common.classes import INSTANCE_CLASSES, TESTED_CLASSES, TESTED_INSTANCE_CLASSES, class_kind
from csc_common.crops import crop_ids, merged_crop_box, parse_crop_manifest, read_crop_manifest, write_crop_manifest
from csc_common.errors import InputError


def test_real_test_manifest(shared_cellmap):
    rows = read_crop_manifest(shared_cellmap / "test_crop_manifest.csv")
    assert len(rows) == 413
    assert len(crop_ids(rows)) == 16
    first = rows[0]
    assert (first.crop_id, first.dataset, first.class_label) == (557, "jrc_ctl-id8-1", "perox_mem")
    assert first.geometry.voxel_size == (1.74, 2.0, 2.0)
    assert first.geometry.translation == (23837.13, 7599.0, 35999.0)
    assert first.geometry.shape == (600, 600, 600)
    assert {r.class_label for r in rows} <= set(TESTED_CLASSES)


def test_class_table_matches_the_challenge(shared_cellmap):
    listed = (shared_cellmap / "tested_classes.csv").read_text().split()
    assert tuple(listed) == TESTED_CLASSES
    docs = (shared_cellmap / "classes_docs_table.csv").read_text().splitlines()[1:]
    instance = {line.split(",")[0] for line in docs if line.split(",")[-2] == "True"}
    assert instance == TESTED_INSTANCE_CLASSES
    assert set(INSTANCE_CLASSES) >= TESTED_INSTANCE_CLASSES
    assert class_kind("mito") == "instance" and class_kind("er") == "semantic"


def test_write_parse_round_trip(shared_cellmap):
    rows = read_crop_manifest(shared_cellmap / "tests_test_crop_manifest.csv")
    assert parse_crop_manifest(write_crop_manifest(rows)) == rows


def test_merged_box_covers_all_rows(shared_cellmap):
    rows = [r for r in read_crop_manifest(shared_cellmap / "test_crop_manifest.csv") if r.crop_id == 557]
    box = merged_crop_box(rows)
    for r in rows:
        assert all(a <= b for a, b in zip(box.start, r.geometry.box.start))
        assert all(a >= b for a, b in zip(box.stop, r.geometry.box.stop))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b\n", "header must be crop_name,dataset"),
        (
            "crop_name,dataset,class_label,voxel_size,translation,shape\nx,ds,mito,[1;1;1],[0;0;0],[1;1;1]\n",
            "line 2: crop_name must be an integer id",
        ),
        (
            "crop_name,dataset,class_label,voxel_size,translation,shape\n1,ds,mito,1;1;1,[0;0;0],[1;1;1]\n",
            "line 2 voxel_size: expected a bracketed",
        ),
        (
            "crop_name,dataset,class_label,voxel_size,translation,shape\n1,ds,mito,[1;1],[0;0;0],[1;1;1]\n",
            "line 2: voxel_size must be 3 finite numbers",
        ),
    ],
)
def test_bad_rows_name_the_line(text, expected):
    with pytest.raises(InputError, match=expected.replace("[", r"\[").replace(";", ";")):
        parse_crop_manifest(text, "m.csv")
