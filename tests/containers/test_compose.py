"""compose.yaml with Debian's docker-compose 1.29: it validates, `up` starts only the viewer,
and `run --rm predictor --help` runs one stage alone."""

import os
import subprocess
import uuid

import pytest
import yaml


@pytest.fixture
def compose_env(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    return {**os.environ, "CSC_DATA": str(data), "COMPOSE_PROJECT_NAME": f"csctest{uuid.uuid4().hex[:8]}"}


def _compose(compose, args, env, timeout=300):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run(
        [*compose, "-f", os.path.join(root, "compose.yaml"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_compose_file_validates(compose, compose_env):
    out = _compose(compose, ["config", "-q"], compose_env)
    assert out.returncode == 0, out.stderr


def test_every_stage_has_a_service_sharing_data(compose, compose_env, stage_images):
    out = _compose(compose, ["config"], compose_env)
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    for stage, (image, _) in stage_images.items():
        svc = services[stage]
        assert svc["image"] == image
        assert any(v.endswith(":/data") or ":/data:" in v for v in map(str, svc["volumes"])), svc["volumes"]
        want_network = "bridge" if stage in ("fetcher", "viewer") else "none"
        assert svc.get("network_mode") == want_network, f"{stage}: network_mode {svc.get('network_mode')}"
    assert services["trainer"].get("shm_size"), "the trainer needs a larger /dev/shm"
    assert [s for s, svc in services.items() if not svc.get("profiles")] == ["viewer"], (
        "`up` must start only the viewer: every other service belongs to a profile"
    )


def test_up_creates_only_the_viewer(docker, compose, compose_env, image_info):
    image_info("viewer")
    try:
        out = _compose(compose, ["up", "--no-start"], compose_env)
        assert out.returncode == 0, out.stderr
        ps = subprocess.run(
            [
                docker,
                "ps",
                "-a",
                "--filter",
                f"label=com.docker.compose.project={compose_env['COMPOSE_PROJECT_NAME']}",
                "--format",
                '{{.Label "com.docker.compose.service"}}',
            ],
            capture_output=True,
            text=True,
        )
        assert ps.stdout.split() == ["viewer"]
    finally:
        _compose(compose, ["down", "--remove-orphans"], compose_env)


def test_run_one_stage_alone(compose, compose_env, image_info):
    image_info("predictor")
    out = _compose(compose, ["run", "--rm", "predictor", "--help"], compose_env)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout.lower() and "csc-predict" in out.stdout
