"""Fixtures of the container tests: a reachable Docker daemon and the stage images.

These tests skip nothing: without Docker they fail with what to do (.ci/run runs
images/ci-setup.sh, which installs Docker, starts dockerd and builds the images).
CSC_SKIP_CONTAINER_TESTS=1 skips them, for quick local runs only.
"""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The fetcher's S3 test doubles (s3_doubles: local S3 server, uploads) live with its tests.
FETCHER_TESTS = str(REPO / "services" / "fetcher" / "tests")
if FETCHER_TESTS not in sys.path:
    sys.path.insert(0, FETCHER_TESTS)

# stage -> (image, console script)
STAGES: dict[str, tuple[str, str]] = {
    "fetcher": ("csc-fetcher:latest", "csc-fetch"),
    "trainer": ("csc-trainer:latest", "csc-train"),
    "exporter": ("csc-exporter:latest", "csc-export"),
    "predictor": ("csc-predictor:latest", "csc-predict"),
    "postprocessor": ("csc-postprocessor:latest", "csc-process"),
    "packer": ("csc-packer:latest", "csc-pack"),
    "evaluator": ("csc-evaluator:latest", "csc-evaluate"),
    "viewer": ("csc-viewer:latest", "csc-view"),
}
# Images that must stay well under 1 GB (issue 9).
SMALL_IMAGES = ("fetcher", "predictor", "postprocessor", "packer", "evaluator")
TORCH_STAGES = ("trainer", "exporter")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`stage` runs a test once per stage image; `small_stage` once per image with a size target."""
    if "stage" in metafunc.fixturenames:
        metafunc.parametrize("stage", list(STAGES))
    if "small_stage" in metafunc.fixturenames:
        metafunc.parametrize("small_stage", list(SMALL_IMAGES))


@pytest.fixture(scope="session")
def stage_images() -> dict[str, tuple[str, str]]:
    """stage -> (image, console script)."""
    return dict(STAGES)


@pytest.fixture(scope="session")
def torch_stages() -> tuple[str, ...]:
    return TORCH_STAGES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.container)


@dataclass(frozen=True)
class Run:
    """The outcome of one `docker run`."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def explain(self) -> str:
        tail = "\n".join((self.stderr or self.stdout).strip().splitlines()[-25:])
        return f"`{' '.join(self.argv)}` exited {self.returncode}:\n{tail}"


def _docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer in 60 s"
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return f"the Docker daemon is not reachable ({last})"
    return None


@pytest.fixture(scope="session")
def docker() -> str:
    """The docker CLI, with a daemon that answers; fails (never skips) unless CSC_SKIP_CONTAINER_TESTS=1."""
    problem = _docker_problem()
    if problem is None:
        return "docker"
    if os.environ.get("CSC_SKIP_CONTAINER_TESTS") == "1":
        pytest.skip(f"container tests skipped (CSC_SKIP_CONTAINER_TESTS=1): {problem}")
    pytest.fail(
        f"Docker is needed by the container tests but {problem}. Run `bash images/ci-setup.sh` "
        "(installs docker.io, starts dockerd, builds the images) or set CSC_SKIP_CONTAINER_TESTS=1 "
        "to skip them in a quick local run.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def stale_images() -> set[str]:
    """Stages whose image is older than its sources (images/images.mk's stamps, asked with `make -q`)."""
    stale = set()
    for stage in STAGES:
        stamp = f"images/wheelhouse/.stamps/image-{stage}"
        out = subprocess.run(["make", "-q", "-f", "images/images.mk", stamp], cwd=REPO, capture_output=True)
        if out.returncode != 0:
            stale.add(stage)
    return stale


@pytest.fixture(scope="session")
def image_info(docker: str, stale_images: set[str]) -> Callable[[str], dict]:
    """`docker image inspect` of a stage's image; fails when the image is missing or older than its sources."""
    cache: dict[str, dict] = {}

    def inspect(stage: str) -> dict:
        name = STAGES[stage][0]
        if stage in stale_images:
            pytest.fail(
                f"image {name} is older than services/{stage} (or csc_common): rebuild with `make images`",
                pytrace=False,
            )
        if name not in cache:
            out = subprocess.run([docker, "image", "inspect", name], capture_output=True, text=True)
            if out.returncode != 0:
                pytest.fail(
                    f"image {name} is missing: build it with `make images` (or images/ci-setup.sh)", pytrace=False
                )
            cache[name] = json.loads(out.stdout)[0]
        return cache[name]

    return inspect


@pytest.fixture(scope="session")
def run_image(docker: str, image_info: Callable[[str], dict]) -> Callable[..., Run]:
    """Run a stage's image like `make RUNNER=docker` does: /data mounted, no network unless asked."""

    def run(
        stage: str,
        args: Sequence[str],
        *,
        data: Path | None = None,
        network: str = "none",
        image: str | None = None,
        user: str | None = None,
        extra: Sequence[str] = (),
        entrypoint: str | None = None,
        timeout: float = 1200,
    ) -> Run:
        if image is None:
            image_info(stage)
            image = STAGES[stage][0]
        argv = [docker, "run", "--rm", "--network", network]
        if data is not None:
            argv += ["-v", f"{data}:/data", "-w", "/data"]
        if user is not None:
            argv += ["--user", user]
        if entrypoint is not None:
            argv += ["--entrypoint", entrypoint]
        argv += [*extra, image, *args]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return Run(argv, out.returncode, out.stdout, out.stderr)

    return run


@pytest.fixture(scope="session")
def compose() -> list[str]:
    """The compose command the tests use: Debian's docker-compose 1.29 (or `docker compose`)."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode == 0:
        return ["docker", "compose"]
    if os.environ.get("CSC_SKIP_CONTAINER_TESTS") == "1":
        pytest.skip("container tests skipped (CSC_SKIP_CONTAINER_TESTS=1): no docker-compose")
    pytest.fail(
        "docker-compose is not installed (apt-get install docker-compose; images/ci-setup.sh does it)", pytrace=False
    )
