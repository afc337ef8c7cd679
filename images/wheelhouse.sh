#!/usr/bin/env bash
# Fill images/wheelhouse/<image>/ with every wheel one stage image installs, so the
# image build never reaches a package index (DESIGN.md §6): the host resolves and
# downloads here; the Dockerfile installs with `pip install --no-index --no-deps`.
#
# Usage: images/wheelhouse.sh [--local-only] IMAGE...
#   IMAGE: fetcher trainer exporter predictor-cpu predictor-gpu postprocessor packer evaluator viewer
#   --local-only  rebuild only the csc-* wheels (sources changed, dependencies did not)
# Layout per image:  local/  csc-common + csc-<stage> wheels built from services/
#                    deps/   the resolved third-party wheels (exact set, nothing else)
# Env: PYTHON (default python3; any CPython with pip), PY_VERSION (default 3.11, the images' Python)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
WH="${HERE}/wheelhouse"
PYTHON="${PYTHON:-python3}"
PY_VERSION="${PY_VERSION:-3.11}"
PIP=(pip_quiet)
# pip, minus the host's warnings about its configured find-links folders that do not apply here.
pip_quiet() { "$PYTHON" -m pip --disable-pip-version-check --quiet "$@" 2> >(grep -v "^WARNING: Location '" >&2); }

log() { printf 'wheelhouse: %s\n' "$*" >&2; }
die() { printf 'wheelhouse: error: %s\n' "$*" >&2; exit 1; }

# Wheels for the images' interpreter and glibc (Debian bookworm: 2.36), whatever the host runs.
PLATFORM=(--only-binary=:all: --implementation cp --python-version "$PY_VERSION"
          --abi "cp${PY_VERSION/./}" --abi abi3 --abi none --platform manylinux2014_x86_64)
for v in $(seq 17 36); do PLATFORM+=(--platform "manylinux_2_${v}_x86_64"); done

stage_of() { case "$1" in predictor-cpu|predictor-gpu) echo predictor ;; *) echo "$1" ;; esac; }

build_local() {  # IMAGE: csc-common + csc-<stage> wheels from the working tree
  local image="$1" stage tmp; stage="$(stage_of "$1")"
  [[ -f "${REPO}/services/${stage}/pyproject.toml" ]] || die "unknown stage '${stage}' (no services/${stage}/pyproject.toml)"
  rm -rf "${WH}/${image}/local"; mkdir -p "${WH}/${image}/local"
  # Build from a copy (symlinks resolved: csc_common/schemas points at the repo's schemas/), so the
  # source tree gets no build/ or egg-info folders and concurrent editable installs do not interfere.
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' RETURN
  for pkg in common "$stage"; do
    mkdir -p "$tmp/$pkg"
    cp -rL "${REPO}/services/${pkg}/pyproject.toml" "${REPO}/services/${pkg}/src" "$tmp/$pkg/"
    find "$tmp/$pkg" \( -name '__pycache__' -o -name '*.egg-info' \) -prune -exec rm -rf {} +
  done
  "${PIP[@]}" wheel --no-deps -w "${WH}/${image}/local" "$tmp/common" "$tmp/$stage" \
    || die "building the csc wheels for ${image} failed"
  "$PYTHON" - "${WH}/${image}"/local/csc_common-*.whl <<'PY' || die "csc_common wheel lacks schemas/*.json"
import sys, zipfile
sys.exit("csc_common/schemas/dataset.schema.json" not in zipfile.ZipFile(sys.argv[1]).namelist())
PY
}

resolve_deps() {  # IMAGE: the third-party closure of the local wheels
  local image="$1" dir="${WH}/$1" extra=() stage; stage="$(stage_of "$1")"
  local common stagewhl
  common="$(ls "${dir}"/local/csc_common-*.whl)"; stagewhl="$(ls "${dir}"/local/csc_"${stage}"-*.whl)"
  rm -rf "${dir}/deps.new"; mkdir -p "${dir}/deps.new"
  # Direct file references pin csc-* to the local wheels (never a same-named index package); the extras
  # a stage asks of csc-common (packer, evaluator: csc-common[submission] -> scikit-image) resolve
  # against that same local wheel.
  "${PIP[@]}" download "${PLATFORM[@]}" -d "${dir}/deps.new" "${common}" "${stagewhl}" "${extra[@]}" \
    || die "resolving the dependencies of ${image} failed"
  rm -f "${dir}"/deps.new/csc_*.whl
  if [[ "$image" == predictor-gpu ]]; then
    # Same closure, with onnxruntime swapped for onnxruntime-gpu (never both): the newest GPU build not
    # newer than the CPU one (GPU releases can lag), with its CUDA/cuDNN wheels where it offers them.
    local ort constraints; ort="$(ls "${dir}"/deps.new/onnxruntime-*.whl | sed -E 's#.*/onnxruntime-([^-]+)-.*#\1#')"
    constraints="$(mktemp)"
    ls "${dir}"/deps.new/*.whl | sed -E 's#.*/([^-]+)-([^-]+)-.*#\1==\2#' | grep -v '^onnxruntime==' > "$constraints"
    rm -f "${dir}"/deps.new/onnxruntime-*.whl
    "${PIP[@]}" download "${PLATFORM[@]}" -d "${dir}/deps.new" -c "$constraints" "onnxruntime-gpu[cuda,cudnn]<=${ort}" \
      || "${PIP[@]}" download "${PLATFORM[@]}" -d "${dir}/deps.new" -c "$constraints" "onnxruntime-gpu<=${ort}" \
      || die "no onnxruntime-gpu <= ${ort} wheel for this platform"
    rm -f "$constraints"
    ! ls "${dir}"/deps.new/onnxruntime-[0-9]*.whl >/dev/null 2>&1 || die "predictor-gpu would carry onnxruntime too"
  fi
  rm -rf "${dir}/deps"; mv "${dir}/deps.new" "${dir}/deps"
  log "${image}: $(ls "${dir}"/deps | wc -l) wheels, $(du -sh "${dir}/deps" | cut -f1)"
  [[ "$image" == predictor-gpu ]] || check_closed "$image"  # its onnxruntime-gpu stands in for onnxruntime
}

check_closed() {  # IMAGE: the csc wheels install from deps/ alone, extras included (what the image does)
  local dir="${WH}/$1" tmp; tmp="$(mktemp -d)"
  "${PIP[@]}" install --dry-run --ignore-installed --no-index --find-links "${dir}/deps" --target "$tmp" \
    "${PLATFORM[@]}" "${dir}"/local/*.whl || { rm -rf "$tmp"; die "$1: deps/ lacks a wheel its csc wheels need"; }
  rm -rf "$tmp"
}

LOCAL_ONLY=0
[[ "${1:-}" == --local-only ]] && { LOCAL_ONLY=1; shift; }
[[ $# -gt 0 ]] || die "usage: $0 [--local-only] IMAGE..."
for image in "$@"; do
  build_local "$image"
  if [[ $LOCAL_ONLY == 0 || ! -d "${WH}/${image}/deps" ]]; then resolve_deps "$image"; fi
done
