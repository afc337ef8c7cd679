"""``csc batch-eval --kubernetes``: one Indexed Job whose completion index selects the CSV row.

Where the original submits one LSF ``bsub`` job per row, this writes one
Kubernetes Job (the cluster engine the project targets, like ``k8s/``): index
I runs ``csc-batch-eval --row=I`` in the evaluator image on the shared volume
at ``/data``, so a pod scores exactly what a local ``--row I`` run scores. Every
path the pods need must lie under ``--data-root`` (the host folder that is that
volume); the CSV is rewritten beside the original as ``STEM.job.csv`` with
``data_path`` relative to it, so host paths never reach a pod. Each index
retries on its own (``backoffLimitPerIndex``); bad input (exit 2) fails only
its index (``FailIndex``); no limit on failed indexes, so a failed row never
stops the others. With ``--apply`` the Job is submitted with ``kubectl`` and
waited for; the failed indexes are the failed rows.
"""

import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from csc_common.errors import InputError, StageFailed
from csc_common.fsutil import atomic_write_text

from csc_evaluator.batch import (
    COLUMNS,
    BatchConfig,
    BatchReport,
    BatchRow,
    Outcome,
    describe,
    read_overall_score,
    row_argv,
)

log = logging.getLogger("csc.batch-eval")
MOUNT = "/data"
CONTAINER = "batch-eval"
ROW_ENV = "CSC_BATCH_ROW"
INDEX_ANNOTATION = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
USER = 10001  # the images' non-root user (k8s/base)


def pod_path(path: str | Path, root: Path, what: str) -> str:
    """``path`` on the shared volume as the pods see it (under /data); InputError when it is not on the volume."""
    p = Path(path).resolve()
    try:
        rel = p.relative_to(root)
    except ValueError:
        raise InputError(
            f"{what} {p} is not under --data-root {root} (the folder mounted at {MOUNT} in the pods)"
        ) from None
    return f"{MOUNT}/{rel.as_posix()}" if rel.parts else MOUNT


def job_csv(rows: Sequence[BatchRow], at: Path, root: Path) -> str:
    """The batch CSV for the pods: the same rows, ``data_path`` relative to the CSV's folder ``at``."""
    lines = [",".join(COLUMNS)]
    for r in rows:
        pod_path(r.submission, root, f"row {r.index}: data_path")
        if not r.submission.exists():
            log.warning(
                "row %d: %s not found (its index will fail unless it appears before the pod runs)",
                r.index,
                r.submission,
            )
        rel = os.path.relpath(r.submission, at)
        if any(c in rel for c in ',"\n') or any(c in r.evaluation_id for c in ',"\n'):
            raise InputError(f"row {r.index}: data_path and evaluation_id must not contain commas or quotes here")
        lines.append(f"{rel},{r.evaluation_id}")
    return "\n".join(lines) + "\n"


def job_document(cfg: BatchConfig, completions: int, args: Sequence[str]) -> dict[str, Any]:
    """The Indexed Job: ``completions`` rows, ``cfg.workers`` at a time, one evaluator pod per row."""
    labels = {"app.kubernetes.io/name": "csc", "app.kubernetes.io/component": "batch-eval"}
    container = {
        "name": CONTAINER,
        "image": cfg.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["csc-batch-eval"],
        "args": [*args, f"--eval-workers={cfg.num_cpus}", f"--row=$({ROW_ENV})"],
        "env": [{"name": ROW_ENV, "valueFrom": {"fieldRef": {"fieldPath": INDEX_ANNOTATION}}}],
        "resources": {
            "requests": {"cpu": str(cfg.num_cpus), "memory": cfg.memory},
            "limits": {"memory": cfg.memory},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "data", "mountPath": MOUNT}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": cfg.job_name, "labels": dict(labels)},
        "spec": {
            "completionMode": "Indexed",
            "completions": completions,
            "parallelism": min(cfg.workers, completions),
            "backoffLimitPerIndex": 1,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailIndex",
                        "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [2]},
                    }
                ]
            },
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": USER,
                        "runAsGroup": USER,
                        "fsGroup": USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": cfg.pvc}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                    "containers": [container],
                },
            },
        },
    }


def write_job(cfg: BatchConfig, rows: Sequence[BatchRow]) -> tuple[Path, Path]:
    """Write the pods' CSV and the Job YAML; returns (job yaml, job csv). Nothing is written on bad input."""
    root = Path(cfg.data_root).resolve()
    if not root.is_dir():
        raise InputError(f"--data-root {root}: folder not found (the host side of the volume at {MOUNT})")
    src = Path(cfg.csv_path).resolve()
    pods_csv = src.with_name(f"{src.stem}.job.csv")
    csv_text = job_csv(rows, pods_csv.parent, root)
    args = row_argv(
        cfg,
        csv_path=pod_path(pods_csv, root, "--csv-path"),
        truth=pod_path(cfg.truth, root, "--truth"),
        test_manifest=pod_path(cfg.test_manifest, root, "--test-manifest") if cfg.test_manifest else "",
        dataset=pod_path(cfg.dataset, root, "--dataset") if cfg.dataset else "",
    )
    doc = job_document(cfg, len(rows), args)
    out = Path(cfg.job_output) if cfg.job_output else src.with_name(f"{src.stem}.job.yaml")
    header = f"# csc batch-eval: {len(rows)} evaluations of {src.name}, one per completion index\n"
    atomic_write_text(pods_csv, csv_text)
    atomic_write_text(out, header + yaml.safe_dump(doc, sort_keys=False))
    return out, pods_csv


def parse_indexes(text: str | None) -> set[int]:
    """A Job's ``status.failedIndexes`` (``"1,3-5"``) as a set of indexes."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _kubectl(cfg: BatchConfig, *args: str) -> str:
    exe = shutil.which("kubectl")
    if exe is None:
        raise InputError("--apply needs kubectl on PATH (or run without --apply and apply the written Job yourself)")
    argv = [exe, *(["--namespace", cfg.namespace] if cfg.namespace else []), *args]
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        msg = (out.stderr or out.stdout).strip().splitlines()
        raise StageFailed(f"kubectl {' '.join(args)}: {msg[-1] if msg else f'exit code {out.returncode}'}")
    return out.stdout


def _finished(status: dict[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in status.get("conditions") or []
    )


def wait_for(cfg: BatchConfig, rows: Sequence[BatchRow]) -> BatchReport:
    """Poll the Job until it completed or failed; rows of failed indexes failed, the others scored."""
    t0 = time.perf_counter()
    while True:
        try:
            status = json.loads(_kubectl(cfg, "get", "job", cfg.job_name, "-o", "json")).get("status") or {}
        except ValueError:
            raise StageFailed(f"kubectl get job {cfg.job_name}: not JSON") from None
        if _finished(status):
            break
        time.sleep(cfg.poll_s)
    failed = parse_indexes(status.get("failedIndexes"))
    dt = time.perf_counter() - t0
    outcomes = tuple(
        Outcome(r, 1, error=f"index {r.index} of job/{cfg.job_name} failed (kubectl logs job/{cfg.job_name})")
        if r.index in failed
        else Outcome(r, 0, overall_score=read_overall_score(r.result), seconds=dt)
        for r in rows
    )
    return BatchReport(outcomes)


def submit(cfg: BatchConfig, rows: Sequence[BatchRow]) -> BatchReport | None:
    """Write the Job (and with ``--apply`` submit it and, unless ``--no-wait``, wait for it)."""
    job, pods_csv = write_job(cfg, rows)
    print(f"wrote {job} (Indexed Job {cfg.job_name}, {len(rows)} rows) and {pods_csv}", flush=True)
    if not cfg.apply:
        print(f"submit it with: kubectl apply -f {job}", flush=True)
        return None
    _kubectl(cfg, "apply", "-f", str(job))
    print(f"submitted job/{cfg.job_name}", flush=True)
    if not cfg.wait:
        return None
    report = wait_for(cfg, rows)
    for o in report.rows:
        print(describe(o), flush=True)
    print(f"batch-eval: {len(rows) - report.failed} of {len(rows)} rows scored, {report.failed} failed", flush=True)
    return report
