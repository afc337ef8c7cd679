#!/usr/bin/env bash
# Make this machine ready for the container tests, idempotently (.ci/run calls it before `make test`):
#   1. Debian packages docker.io, docker-compose, debootstrap (installed only when missing);
#   2. dockerd running (started in the background when `docker info` fails);
#   3. the base image and every stage image built, reusing Docker's cache and the Make stamps;
#   4. the test tools the k8s tests use (kubernetes-validate in .venv, kubectl present).
# Timings of each step go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'ci-setup: %s\n' "$*" >&2; }
die() { printf 'ci-setup: error: %s\n' "$*" >&2; exit 1; }
t_start=$(date +%s)
step() { log "$1 ($(( $(date +%s) - t_start ))s elapsed)"; }

need=()
for pkg in docker.io docker-compose debootstrap; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [[ ${#need[@]} -gt 0 ]]; then
  step "installing ${need[*]}"
  [[ $(id -u) -eq 0 ]] || die "installing ${need[*]} needs root"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || die "dockerd not found after installing docker.io"
  step "starting dockerd (log: /tmp/csc-dockerd.log)"
  setsid dockerd >/tmp/csc-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 /tmp/csc-dockerd.log >&2; die "dockerd did not come up in 60 s"; }
fi

if [[ -x .venv/bin/python ]] && ! .venv/bin/python -c 'import kubernetes_validate' 2>/dev/null; then
  step "installing kubernetes-validate into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check kubernetes-validate 2> >(grep -v "^WARNING: Location '" >&2)
fi
command -v kubectl >/dev/null || log "warning: kubectl not found: the k8s tests will fail (apt-get install kubectl)"

step "building the images (make images)"
# Dangling layers older than 2 h first: every rebuild leaves the previous images behind
# (tens of GB in a busy day), and a full disk fails the build. Recent ones stay as the
# builder stages' cache.
docker image prune -f --filter until=2h >/dev/null
make --no-print-directory -j2 --output-sync=target images
step "images ready"
make --no-print-directory image-sizes >&2
