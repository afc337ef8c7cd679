"""Each stage image on its own: `--help`, non-root numeric user, entrypoint, labels, what it carries, size."""

import json

# Distributions each image must carry (True) or must not (False).
PACKAGES = {
    "fetcher": {"csc-fetcher": True, "boto3": True, "torch": False, "onnxruntime": False},
    "trainer": {"csc-trainer": True, "torch": True, "onnxruntime": False, "onnxruntime-gpu": False},
    "exporter": {"csc-exporter": True, "torch": True, "onnx": True, "onnxruntime": True},
    "predictor": {"csc-predictor": True, "onnxruntime": True, "onnxruntime-gpu": False, "torch": False},
    "postprocessor": {"csc-postprocessor": True, "torch": False, "onnxruntime": False},
    "packer": {"csc-packer": True, "torch": False, "onnxruntime": False},
    "evaluator": {"csc-evaluator": True, "torch": False, "onnxruntime": False},
    "viewer": {"csc-viewer": True, "neuroglancer": True, "torch": False, "onnxruntime": False},
}
# Stages that use scikit-image: the packer and the evaluator through csc-common[submission] (the
# challenge's resampling), the postprocessor directly (watershed). No other image may carry it.
SUBMISSION_STAGES = ("packer", "evaluator")
SKIMAGE_STAGES = (*SUBMISSION_STAGES, "postprocessor")
LIST_DISTS = "import importlib.metadata as m, json; print(json.dumps(sorted({d.metadata['Name'].lower() for d in m.distributions()})))"


def test_help_runs_offline(stage, run_image):
    run = run_image(stage, ["--help"])
    assert run.returncode == 0, run.explain()
    assert "usage:" in run.stdout.lower(), run.stdout[:500]


def test_runs_as_a_numeric_non_root_user_with_the_console_script(stage, image_info, stage_images):
    config = image_info(stage)["Config"]
    user, _, group = config["User"].partition(":")
    assert user.isdigit() and int(user) != 0, f"{stage}: user {config['User']!r} is not a numeric non-root uid"
    assert group.isdigit() and int(group) != 0
    assert config["Entrypoint"] == [stage_images[stage][1]]
    assert config["WorkingDir"] == "/data"
    labels = config["Labels"] or {}
    assert labels.get("org.opencontainers.image.title") == f"csc-{stage}"
    for key in ("version", "revision", "description"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"{stage}: OCI label {key} missing"
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env.get("CSC_IMAGE") == stage_images[stage][0], "the manifests' producer.image comes from CSC_IMAGE"


def test_carries_only_its_own_dependencies(stage, run_image, stage_images, torch_stages):
    run = run_image(stage, ["-c", LIST_DISTS], entrypoint="python3")
    assert run.returncode == 0, run.explain()
    dists = set(json.loads(run.stdout))
    assert "csc-common" in dists
    others = {f"csc-{s}" for s in stage_images} - {f"csc-{stage}"}
    assert not dists & others, f"{stage} carries other stages: {sorted(dists & others)}"
    for name, wanted in PACKAGES[stage].items():
        assert (name in dists) == wanted, f"{stage}: {name} {'missing' if wanted else 'must not be installed'}"
    assert ("torch" in dists) == (stage in torch_stages)


def test_small_images_stay_well_under_one_gigabyte(small_stage, image_info):
    size = image_info(small_stage)["Size"]
    assert size < 800e6, f"csc-{small_stage}: {size / 1e6:.0f} MB (target: well under 1 GB)"


def test_root_filesystem_can_be_read_only(run_image):
    """What k8s sets (readOnlyRootFilesystem): a stage runs with only /data and /tmp writable."""
    run = run_image("packer", ["--help"], extra=["--read-only", "--tmpfs", "/tmp"])
    assert run.returncode == 0, run.explain()


def test_scikit_image_only_where_a_stage_needs_it(stage, run_image):
    """csc_common.submission sits behind an extra so that only the images that resample or label carry scikit-image."""
    probe = "import importlib.util as u; print(u.find_spec('skimage') is not None)"
    if stage in SUBMISSION_STAGES:
        probe = "import csc_common.submission.align, skimage.transform; print(True)"
    run = run_image(stage, ["-c", probe], entrypoint="python3")
    assert run.returncode == 0, run.explain()
    carries = run.stdout.strip() == "True"
    wanted = stage in SKIMAGE_STAGES
    assert carries == wanted, f"{stage}: scikit-image {'missing' if wanted else 'carried but never used'}"
