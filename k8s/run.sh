#!/usr/bin/env bash
# Run the csc pipeline on a Kubernetes cluster, one stage Job at a time, each waiting for the last.
#
# Usage: k8s/run.sh [-k OVERLAY] [-n NAMESPACE] [STAGE...]
#   OVERLAY   k8s/base (real data, default), k8s/demo (synthetic data + scores), k8s/gpu, or your own
#   STAGE     fetch train export predict predict-finalize process pack evaluate view
#             (default: fetch .. pack, plus evaluate and view for the demo overlay)
# A stage whose Job already completed is skipped; a failed Job stops the run (its logs are printed).
# To rerun a stage: kubectl delete job csc-STAGE, then run it again.
set -euo pipefail

OVERLAY=k8s/base
NS=()
while getopts "k:n:" opt; do
  case $opt in
    k) OVERLAY=$OPTARG ;;
    n) NS=(-n "$OPTARG") ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
STAGES=("$@")
if [[ ${#STAGES[@]} -eq 0 ]]; then
  STAGES=(fetch train export predict predict-finalize process pack)
  [[ "$OVERLAY" == *demo* ]] && STAGES+=(evaluate view)
fi
TIMEOUT_S=${TIMEOUT_S:-21600}   # per stage

kc() { kubectl "${NS[@]}" "$@"; }

echo "k8s: shared volume (PVC csc-data) and network policy from ${OVERLAY}"
kc apply -k "$OVERLAY" -l app.kubernetes.io/component=shared

for stage in "${STAGES[@]}"; do
  job="csc-${stage}"
  if [[ "$(kc get job "$job" -o jsonpath='{.status.succeeded}' 2>/dev/null)" != "" ]] \
     && kc wait --for=condition=complete --timeout=1s "job/$job" >/dev/null 2>&1; then
    echo "k8s: ${job} already complete"; continue
  fi
  echo "k8s: ${job}"
  kc apply -k "$OVERLAY" -l "app.kubernetes.io/component=${stage}"
  # Wait for Complete or Failed, whichever comes first.
  deadline=$(( $(date +%s) + TIMEOUT_S ))
  until kc wait --for=condition=complete --timeout=30s "job/$job" >/dev/null 2>&1; do
    if kc wait --for=condition=failed --timeout=1s "job/$job" >/dev/null 2>&1; then
      echo "k8s: ${job} failed:" >&2
      kc logs "job/$job" --tail=40 >&2 || true
      exit 1
    fi
    [[ $(date +%s) -lt $deadline ]] || { echo "k8s: ${job} not done after ${TIMEOUT_S} s" >&2; exit 1; }
  done
  echo "k8s: ${job} complete"
done
