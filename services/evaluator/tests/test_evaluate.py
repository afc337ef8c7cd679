"""Planning, pool sizing, environment constants, and worker failures surfacing as one clear error."""

import pytest
from csc_common.errors import InputError
from csc_evaluator import evaluate
from csc_evaluator.cli import main
from csc_evaluator.constants import Constants, env_max_workers
from csc_evaluator.evaluate import Job, plan_jobs, pool_size
from csc_evaluator.submission import open_submission


def _job(voxels):
    return Job(
        crop="crop1",
        label="ecs",
        truth="t",
        mask=None,
        pred=None,
        target=None,
        instance=False,
        align_kind="semantic",
        voxels=voxels,
    )


def test_pool_size_is_capped_by_memory_jobs_and_request():
    jobs = [_job(100**3)] * 10
    peak = 100**3 * evaluate.BYTES_PER_VOXEL + (64 << 20)
    assert pool_size(jobs, 8, memory=10 * peak) == 7  # 70 % of memory / peak
    assert pool_size(jobs, 8, memory=1) == 1  # never below one
    assert pool_size(jobs, 3, memory=1 << 40) == 3
    assert pool_size(jobs[:2], 8, memory=1 << 40) == 2
    assert evaluate.available_memory() > 0


def test_constants_from_env(monkeypatch):
    for k, v in {
        "FINAL_INSTANCE_RATIO_CUTOFF": "3",
        "INITIAL_INSTANCE_RATIO_CUTOFF": "7",
        "INSTANCE_RATIO_FACTOR": "2",
        "MAX_OVERLAP_EDGES": "9",
        "MCMF_COST_SCALE": "1000",
        "MAX_UNCOMPRESSED_SIZE": "5",
    }.items():
        monkeypatch.setenv(k, v)
    c = Constants.from_env()
    assert (c.final_instance_ratio_cutoff, c.initial_instance_ratio_cutoff, c.instance_ratio_factor) == (3, 7, 2)
    assert (c.max_overlap_edges, c.mcmf_cost_scale, c.max_uncompressed_size) == (9, 1000, 5)
    assert c.ratio_cutoff(2) == pytest.approx(3 + 7 * 2.718281828459045**-1)
    monkeypatch.setenv("MCMF_COST_SCALE", "lots")
    with pytest.raises(InputError, match="MCMF_COST_SCALE: not a number"):
        Constants.from_env()


def test_max_workers_env(monkeypatch):
    monkeypatch.delenv("MAX_WORKERS", raising=False)
    monkeypatch.delenv("MAX_INSTANCE_THREADS", raising=False)
    monkeypatch.delenv("MAX_SEMANTIC_THREADS", raising=False)
    assert env_max_workers() is None
    monkeypatch.setenv("MAX_INSTANCE_THREADS", "2")
    monkeypatch.setenv("MAX_SEMANTIC_THREADS", "3")
    assert env_max_workers() == 5
    monkeypatch.setenv("MAX_WORKERS", "4")
    assert env_max_workers() == 4


def test_plan_follows_truth_and_orders_by_manifest(tmp_path, tiny_case, ev):
    from csc_common.crops import read_crop_manifest

    _, truth = tiny_case
    ev.write_submission(tmp_path / "sub.zarr", {"crop2": truth["crop2"]})
    rows = read_crop_manifest(tmp_path / "test_crop_manifest.csv")
    with open_submission(tmp_path / "sub.zarr", Constants()) as sub:
        plan, empty = plan_jobs(sub, tmp_path / "truth.zarr", rows, instance_classes=["mito"], compare_empty=True)
    assert [(j.crop, j.label, j.pred is not None) for j in plan.jobs] == [
        ("crop1", "ecs", False),
        ("crop1", "mito", False),
        ("crop2", "ecs", True),
        ("crop2", "mito", True),
    ]
    assert all(j.empty and j.pred is None for j in empty.jobs) and plan.total_evals == 4
    assert [j.instance for j in plan.jobs] == [False, True, False, True]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_corrupt_chunk_in_a_worker_is_one_clear_error(tmp_path, tiny_case, ev, capsys, workers):
    _, truth = tiny_case
    ev.write_submission(tmp_path / "sub.zarr", truth)
    (tmp_path / "sub.zarr" / "crop2" / "mito" / "0" / "0" / "0").write_bytes(b"garbage")
    rc = main(
        [
            str(tmp_path / "sub.zarr"),
            "--truth",
            str(tmp_path / "truth.zarr"),
            "--output",
            str(tmp_path / "r.json"),
            "--workers",
            workers,
            "-q",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "crop 2 class mito:" in err[0] and "cannot read array data" in err[0], err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "scores.json").exists()
