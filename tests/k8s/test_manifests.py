"""k8s/: every overlay renders offline with `kubectl kustomize`, every rendered object passes
`kubernetes-validate --strict`, and the rules that tool does not check hold (Indexed predictor
with per-index backoff and restartPolicy Never, shard count = completions, security context,
shared ReadWriteMany volume, memory-backed /dev/shm for the trainer, GPU only where asked,
image overrides, and arguments every stage's CLI accepts)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("base", "demo", "gpu")
# Kubernetes versions validated against: the first with backoffLimitPerIndex GA, and the tool's latest.
VERSIONS = ("1.33.0", None)
STAGE_SCRIPTS = {
    "fetch": "csc-fetch",
    "train": "csc-train",
    "export": "csc-export",
    "predict": "csc-predict",
    "predict-finalize": "csc-predict",
    "process": "csc-process",
    "pack": "csc-pack",
    "evaluate": "csc-evaluate",
    "view": "csc-view",
}


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(
            f"{name} is needed to check k8s/ offline but is not installed "
            f"({'apt-get install kubectl' if name == 'kubectl' else 'pip install kubernetes-validate'})",
            pytrace=False,
        )
    return found


def render(path: Path) -> str:
    out = subprocess.run([_tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {path}: {out.stderr}"
    return out.stdout


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request, tmp_path_factory):
    text = render(K8S / request.param)
    path = tmp_path_factory.mktemp("k8s") / f"{request.param}.yaml"
    path.write_text(text)
    docs = [d for d in yaml.safe_load_all(text) if d]
    return request.param, path, docs


def jobs(docs):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Job"}


def container(job):
    (c,) = job["spec"]["template"]["spec"]["containers"]
    return c


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_passes_strict_validation(rendered, version):
    _, path, docs = rendered
    argv = [_tool("kubernetes-validate"), "--strict", "--quiet", str(path)]
    if version:
        argv[1:1] = ["-k", version]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(docs) == 11


def test_strict_validation_rejects_an_unknown_field(tmp_path):
    """The validator can fail: a misspelt field is an error under --strict."""
    job = [d for d in yaml.safe_load_all(render(K8S / "base")) if d and d["kind"] == "Job"][0]
    job["spec"]["template"]["spec"]["restartPolicyy"] = "Never"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(job))
    out = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", "--quiet", str(bad)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode != 0


def test_one_job_per_stage_on_one_shared_volume(rendered):
    _, _, docs = rendered
    (pvc,) = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    js = jobs(docs)
    assert set(js) == {f"csc-{s}" for s in STAGE_SCRIPTS}
    for name, job in js.items():
        pod = job["spec"]["template"]["spec"]
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert claims == [pvc["metadata"]["name"]], name
        mounts = {m["mountPath"]: m["name"] for m in container(job)["volumeMounts"]}
        assert "/data" in mounts and "/tmp" in mounts, f"{name}: mounts {mounts}"
        labels = job["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == name.removeprefix("csc-"), "k8s/run.sh selects by component"


def test_only_the_fetcher_has_a_network(rendered):
    """The NetworkPolicy selects every csc pod but the fetcher's and allows them no traffic."""
    _, _, docs = rendered
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    spec = policy["spec"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"] and spec["egress"] == [] and spec["ingress"] == []

    def selected(labels: dict) -> bool:
        for e in spec["podSelector"]["matchExpressions"]:
            value = labels.get(e["key"])
            if (e["operator"] == "In") != (value in e["values"]):
                return False
        return True

    for name, job in jobs(docs).items():
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert selected(labels) == (name != "csc-fetch"), f"{name}: network {'cut' if selected(labels) else 'open'}"


def test_pods_never_restart_in_place_and_bad_input_is_not_retried(rendered):
    """Per-index backoff and pod failure policies require restartPolicy Never; exit 2 means bad input."""
    _, _, docs = rendered
    for name, job in jobs(docs).items():
        spec = job["spec"]
        assert spec["template"]["spec"]["restartPolicy"] == "Never", name
        rules = spec["podFailurePolicy"]["rules"]
        cname = container(job)["name"]
        exit2 = [r for r in rules if r.get("onExitCodes", {}).get("values") == [2]]
        assert exit2 and exit2[0]["onExitCodes"]["containerName"] == cname, name
        indexed = spec.get("completionMode") == "Indexed"
        assert exit2[0]["action"] == ("FailIndex" if indexed else "FailJob"), name
        if not indexed:
            assert "backoffLimitPerIndex" not in spec and 0 < spec["backoffLimit"] <= 6, name


def test_predictor_is_an_indexed_job_with_one_shard_per_completion(rendered):
    _, _, docs = rendered
    job = jobs(docs)["csc-predict"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] >= 2 and 1 <= spec["parallelism"] <= spec["completions"]
    assert 1 <= spec["backoffLimitPerIndex"] <= 6
    assert "backoffLimit" not in spec, "with backoffLimitPerIndex the Job-wide limit must stay unbounded"
    assert 0 <= spec["maxFailedIndexes"] < spec["completions"]
    env = {e["name"]: e.get("value") for e in container(job).get("env", [])}
    assert env.get("CSC_PREDICT_SHARDS") == str(spec["completions"]), (
        "the predictor's shard count must equal completions (it reads JOB_COMPLETION_INDEX of that many)"
    )
    assert "JOB_COMPLETION_INDEX" not in env, "Kubernetes sets JOB_COMPLETION_INDEX itself"
    assert not any(a.startswith("--shard") for a in container(job)["args"])


def test_finalize_follows_the_predictor_with_the_same_arguments(rendered):
    _, _, docs = rendered
    js = jobs(docs)
    predict, finalize = container(js["csc-predict"]), container(js["csc-predict-finalize"])
    assert finalize["image"] == predict["image"]
    plan_args = [a for a in predict["args"] if not a.startswith(("--provider", "--threads"))]
    assert finalize["args"] == ["finalize", *plan_args], "finalize re-plans the same blocks: same flags"
    assert "completionMode" not in js["csc-predict-finalize"]["spec"]


def test_non_root_read_only_containers(rendered):
    _, _, docs = rendered
    for name, job in jobs(docs).items():
        pod = job["spec"]["template"]["spec"]
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0 and psc["runAsGroup"] > 0, name
        assert psc.get("fsGroup") == psc["runAsGroup"], f"{name}: fsGroup lets the user write the volume"
        csc = container(job)["securityContext"]
        assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False, name
        assert csc["capabilities"]["drop"] == ["ALL"], name
        res = container(job)["resources"]
        assert res["requests"]["memory"] and res["limits"]["memory"], f"{name}: memory requests and limits"


def test_trainer_has_a_memory_backed_dev_shm(rendered):
    _, _, docs = rendered
    job = jobs(docs)["csc-train"]
    vols = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(job)["volumeMounts"]}
    assert vols[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert vols[mounts["/dev/shm"]]["emptyDir"].get("sizeLimit")


def test_gpus_only_in_the_gpu_overlay_and_only_for_the_predictor(rendered):
    overlay, _, docs = rendered
    for name, job in jobs(docs).items():
        c = container(job)
        gpu = c["resources"].get("limits", {}).get("nvidia.com/gpu")
        if overlay == "gpu" and name == "csc-predict":
            assert gpu == 1 and c["resources"]["requests"]["nvidia.com/gpu"] == 1
            assert c["image"].startswith("csc-predictor-gpu:")
            assert "--provider=cuda" in c["args"]
        else:
            assert gpu is None, f"{overlay}/{name} requests a GPU"
            if name.startswith("csc-predict") and overlay != "gpu":
                assert c["image"].startswith("csc-predictor:")


def test_images_can_be_overridden_with_kustomize(tmp_path):
    """A user's overlay points every image at a registry; nothing else changes."""
    base = [d for d in yaml.safe_load_all(render(K8S / "base")) if d]
    images = sorted({container(j)["image"].split(":")[0] for j in jobs(base).values()})
    assert len(images) == 8
    rel = os.path.relpath(K8S / "base", tmp_path)
    overrides = "\n".join(f"  - {{name: {i}, newName: registry.example/{i}, newTag: v9}}" for i in images)
    (tmp_path / "kustomization.yaml").write_text(
        f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [{rel}]\nimages:\n{overrides}\n"
    )
    over = [d for d in yaml.safe_load_all(render(tmp_path)) if d]
    for name, job in jobs(over).items():
        image = container(job)["image"]
        assert image.startswith("registry.example/csc-") and image.endswith(":v9"), f"{name}: {image}"
        orig = dict(container(jobs(base)[name]))
        assert {**orig, "image": image} == container(job)


def test_job_arguments_are_accepted_by_each_stage_cli(rendered):
    """Every --flag a Job passes exists in that stage's CLI (checked against the installed `--help`)."""
    _, _, docs = rendered
    bindir = Path(sys.executable).parent
    helps: dict[str, str] = {}
    for name, job in jobs(docs).items():
        script = STAGE_SCRIPTS[name.removeprefix("csc-")]
        exe = shutil.which(script) or shutil.which(script, path=str(bindir))
        assert exe, f"{script} is not installed (make venv)"
        if script not in helps:
            out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            helps[script] = out.stdout
        for arg in container(job)["args"]:
            if arg.startswith("--"):
                flag = arg.split("=", 1)[0]
                assert flag in helps[script], f"{name}: {script} has no {flag}"
            elif not arg.startswith("/data") and arg != "finalize":
                pytest.fail(f"{name}: argument {arg!r} is neither a flag nor a /data path")
