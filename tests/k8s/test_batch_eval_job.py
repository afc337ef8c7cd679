"""The Indexed Job of `csc batch-eval --kubernetes`, checked offline: `kubernetes-validate --strict`, the rules that
tool does not check (one index per CSV row, a failed row never stops the others, bad input not retried, no network,
the project's security context, the shared volume), and every pod's command run here with /data mapped to the data
root: each index scores exactly its row."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from csc_common import volumes
from csc_common.crops import CropRow, write_crop_manifest
from csc_common.geometry import Geometry

REPO = Path(__file__).resolve().parents[1].parent
BIN = Path(sys.executable).parent
VERSIONS = ("1.33.0", None)
G = Geometry((4.0, 4.0, 4.0), (0.0, 0.0, 0.0), (8, 8, 8))


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(BIN))
    if not found:
        pytest.fail(f"{name} is needed (make venv)", pytrace=False)
    return found


def _arrays(root: Path, data: np.ndarray) -> Path:
    grp = volumes.open_group(root, "w")
    arr = volumes.create_array(
        grp.require_group("crop1"),
        "ecs",
        shape=data.shape,
        dtype=data.dtype,
        attrs={"voxel_size": list(G.voxel_size), "translation": list(G.translation), "shape": list(G.shape)},
    )
    arr[...] = data
    return root


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A data root with truth, two zarr submissions and a CSV; the Job written for it with 2 workers, 3 CPUs."""
    root = tmp_path_factory.mktemp("volume")
    truth = np.zeros(G.shape, np.uint8)
    truth[:4] = 1
    _arrays(root / "truth.zarr", truth)
    (root / "test_crop_manifest.csv").write_text(write_crop_manifest([CropRow(1, "ds", "ecs", G)]))
    _arrays(root / "teams/a/sub.zarr", truth)
    _arrays(root / "teams/b/sub.zarr", np.roll(truth, 2, axis=0))
    csv = root / "evals" / "batch.csv"
    csv.parent.mkdir()
    csv.write_text(f"data_path,evaluation_id\n{root / 'teams/a/sub.zarr'},1\n../teams/b/sub.zarr,2\n")
    run = subprocess.run(
        [_tool("csc-batch-eval"), "-c", str(csv), "-t", str(root / "truth.zarr"), "--kubernetes", "--data-root",
         str(root), "-w", "2", "-n", "3", "--image", "reg.example/csc-evaluator:v1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    path = root / "evals" / "batch.job.yaml"
    return root, path, yaml.safe_load(path.read_text())


@pytest.mark.parametrize("version", VERSIONS)
def test_job_passes_strict_validation(job, version):
    _, path, _ = job
    argv = [_tool("kubernetes-validate"), "--strict", "--quiet", str(path)]
    if version:
        argv[1:1] = ["-k", version]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_one_index_per_row_and_failures_stay_with_their_row(job):
    _, _, doc = job
    spec = doc["spec"]
    assert doc["kind"] == "Job" and spec["completionMode"] == "Indexed"
    assert spec["completions"] == 2 and spec["parallelism"] == 2
    assert 1 <= spec["backoffLimitPerIndex"] <= 6 and "backoffLimit" not in spec
    assert "maxFailedIndexes" not in spec, "a failed row must not stop the others"
    (c,) = spec["template"]["spec"]["containers"]
    (rule,) = spec["podFailurePolicy"]["rules"]
    assert rule == {"action": "FailIndex", "onExitCodes": {"containerName": c["name"], "operator": "In", "values": [2]}}
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    env = {e["name"]: e for e in c["env"]}
    index = env["CSC_BATCH_ROW"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert c["args"][-1] == "--row=$(CSC_BATCH_ROW)"
    assert c["image"] == "reg.example/csc-evaluator:v1" and c["command"] == ["csc-batch-eval"]
    assert c["resources"]["requests"]["cpu"] == "3" and "--eval-workers=3" in c["args"]


def test_no_network_non_root_and_the_shared_volume(job):
    _, _, doc = job
    pod = doc["spec"]["template"]["spec"]
    policy = yaml.safe_load((REPO / "k8s/base/networkpolicy.yaml").read_text())
    labels = doc["spec"]["template"]["metadata"]["labels"]
    for e in policy["spec"]["podSelector"]["matchExpressions"]:
        assert (e["operator"] == "In") == (labels.get(e["key"]) in e["values"]), f"not cut off the network: {e}"
    psc, (c,) = pod["securityContext"], pod["containers"]
    assert psc["runAsNonRoot"] and psc["runAsUser"] > 0 and psc["fsGroup"] == psc["runAsGroup"]
    assert c["securityContext"]["readOnlyRootFilesystem"] and c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["csc-data"]
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/data", "/tmp"}


def test_every_flag_exists_and_every_path_is_on_the_volume(job):
    _, _, doc = job
    (c,) = doc["spec"]["template"]["spec"]["containers"]
    helptext = subprocess.run([_tool("csc-batch-eval"), "--help"], capture_output=True, text=True, check=True).stdout
    for arg in c["args"]:
        flag, _, value = arg.partition("=")
        assert arg.startswith("--") and flag in helptext, arg
        if "/" in value:
            assert value.startswith("/data/"), arg


def test_each_pod_scores_its_own_row(job):
    """Run the container's command for every index here, with /data mapped to the data root."""
    root, _, doc = job
    (c,) = doc["spec"]["template"]["spec"]["containers"]
    scores = {}
    for index in range(doc["spec"]["completions"]):
        args = [a.replace("$(CSC_BATCH_ROW)", str(index)).replace("=/data/", f"={root}/") for a in c["args"]]
        run = subprocess.run([_tool(c["command"][0]), *args, "-q"], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        team = "ab"[index]
        result = root / "teams" / team / f"eval_{index + 1}.results"
        scores[team] = yaml.safe_load(result.read_text())["overall_semantic_score"]  # no instance class here
        if index == 0:
            assert not (root / "teams/b/eval_2.results").exists(), "index 0 scored more than its row"
    assert scores["a"] == 1.0 and 0 < scores["b"] < 1
