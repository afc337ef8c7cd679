"""``csc batch-eval``: score many submissions listed in a CSV, locally in a pool or as one Kubernetes Job.

The CSV is the original's (UPSTREAM.md §1.11): a header row naming the columns
``data_path`` (a submission: zip, folder with one zip, or zarr) and
``evaluation_id`` (other columns are ignored); each row is scored by the
evaluator's own `run` into ``eval_<evaluation_id>.results`` beside its
submission (plus ``eval_<id>_extended.results`` and ``eval_<id>.scores.json``).
Differences from the original: a relative ``data_path`` is relative to the
CSV's folder (not the working directory), so the same CSV works inside a pod;
an integer-like id is written as the integer, as the original's pandas reads
it (``007`` -> ``eval_7.results``).

One row is always scored in a process of its own (``--row I``): locally
``--workers N`` runs N such processes at once, each logging to
``eval_<id>.log`` beside its results; on a cluster each index of an Indexed
Job runs the same command (`csc_evaluator.k8sjob`). A failed row does not stop
the others, and the exit code is the number of rows that failed (capped at 100;
0 = all scored). Bad input to batch-eval itself (the CSV, the options) is one
line and exit 2 before anything runs.
"""
# ruff: noqa: UP007, UP045  (argparse-dataclass needs typing.Optional, not X | None)

import csv
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from csc_common.errors import InputError

log = logging.getLogger("csc.batch-eval")
COLUMNS = ("data_path", "evaluation_id")
MAX_EXIT = 100  # exit code = failed rows, capped below the shell's signal codes
_INT = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True, kw_only=True)
class BatchConfig:
    """Score every submission of a CSV (data_path, evaluation_id) locally in a pool, or as one Kubernetes Job."""

    csv_path: str = field(
        metadata={
            "args": ["-c", "--csv-path", "--csv_path"],
            "help": "CSV with a header row and the columns data_path (submission) and evaluation_id",
        }
    )
    truth: str = field(
        metadata={"args": ["--truth", "-t", "--truth-path", "--truth_path"], "help": "ground-truth zarr"}
    )
    test_manifest: str = field(
        default="", metadata={"help": "test crop manifest CSV (default: test_crop_manifest.csv beside the truth)"}
    )
    dataset: str = field(default="", metadata={"help": "dataset manifest whose class kinds decide instance scoring"})
    instance_classes: str = field(
        default="",
        metadata={
            "args": ["--instance-classes", "-ic", "--instance_classes"],
            "help": "comma list of classes scored as instances (default: as csc-evaluate)",
        },
    )
    rules: Literal["challenge", "documented", "official"] = field(
        default="challenge", metadata={"help": "scoring rules, as csc-evaluate --rules"}
    )
    workers: int = field(
        default=1,
        metadata={
            "args": ["-w", "--workers"],
            "help": "evaluations at once: local processes, or the Job's parallelism with --kubernetes",
            "min": 1,
        },
    )
    eval_workers: int = field(
        default=0,
        metadata={"help": "scoring processes inside each evaluation (0: CPUs / --workers; --num-cpus on a cluster)"},
    )
    row: Optional[int] = field(
        default=None,
        metadata={"help": "score only this data row of the CSV (0 = the first after the header); what each pod runs"},
    )
    kubernetes: bool = field(
        default=False,
        metadata={
            "args": ["--kubernetes", "-C", "--cluster"],
            "help": "write one Indexed Job (an index per row, the evaluator image) instead of running locally",
        },
    )
    apply: bool = field(default=False, metadata={"help": "with --kubernetes: submit the Job with kubectl and wait"})
    wait: bool = field(
        default=True,
        metadata={"help": "with --apply: wait for the Job and count the failed rows (--no-wait: submit and return)"},
    )
    job_output: str = field(default="", metadata={"help": "Job YAML to write (default: CSV_STEM.job.yaml beside it)"})
    job_name: str = field(default="csc-batch-eval", metadata={"help": "name of the Job"})
    image: str = field(default="csc-evaluator:latest", metadata={"help": "evaluator image of the Job"})
    data_root: str = field(
        default="data",
        metadata={"help": "host folder that is the shared volume mounted at /data; every path must lie under it"},
    )
    pvc: str = field(default="csc-data", metadata={"help": "PersistentVolumeClaim mounted at /data"})
    namespace: str = field(default="", metadata={"help": "kubectl namespace (default: the context's)"})
    num_cpus: int = field(
        default=2,
        metadata={"args": ["-n", "--num-cpus", "--num_cpus"], "help": "CPUs per evaluation pod", "min": 1},
    )
    memory: str = field(default="8Gi", metadata={"help": "memory request and limit of each evaluation pod"})
    poll_s: float = field(default=10.0, metadata={"help": "with --apply: seconds between Job status checks", "gt": 0})

    def __post_init__(self) -> None:
        if self.apply and not self.kubernetes:
            raise InputError("--apply submits the Job written by --kubernetes; give both")
        if self.row is not None and self.kubernetes:
            raise InputError("--row scores one row here; --kubernetes writes a Job for every row; give one")
        if self.row is not None and self.row < 0:
            raise InputError(f"--row: must be >= 0, got {self.row}")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", self.job_name):
            raise InputError(f"--job-name {self.job_name!r}: expected lower-case letters, digits and '-' (<= 52)")
        if not re.fullmatch(r"\d+(\.\d+)?([KMGTPE]i?)?", self.memory):
            raise InputError(f"--memory {self.memory!r}: expected a Kubernetes quantity like 8Gi")


@dataclass(frozen=True)
class BatchRow:
    """One CSV row: its 0-based data row index, the submission (absolute) and the evaluation id."""

    index: int
    submission: Path
    evaluation_id: str

    @property
    def result(self) -> Path:
        """``eval_<id>.results`` beside the submission (the original's name)."""
        return self.submission.parent / f"eval_{self.evaluation_id}.results"

    @property
    def scores(self) -> Path:
        return self.submission.parent / f"eval_{self.evaluation_id}.scores.json"

    @property
    def log(self) -> Path:
        return self.submission.parent / f"eval_{self.evaluation_id}.log"


@dataclass(frozen=True)
class Outcome:
    """How one row ended: exit code 0 (scored), 1 (failed) or 2 (bad input); its overall score or the error."""

    row: BatchRow
    exit_code: int
    overall_score: float | None = None
    error: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class BatchReport:
    rows: tuple[Outcome, ...]

    @property
    def failed(self) -> int:
        return sum(o.exit_code != 0 for o in self.rows)

    @property
    def exit_code(self) -> int:
        return min(self.failed, MAX_EXIT)


# ---------------------------------------------------------------- the CSV
def _evaluation_id(raw: str, where: str) -> str:
    value = raw.strip()
    if _INT.match(value):
        value = str(int(value))  # as pandas reads it
    if not value or value in (".", "..") or any(c in value for c in "/\\\0"):
        raise InputError(f"{where}: evaluation_id {raw!r} cannot name a file eval_<id>.results")
    return value


def parse_batch_csv(text: str, csv_path: Path) -> list[BatchRow]:
    """The rows of a batch CSV; InputError naming the file and line for a missing column or a clash."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(f"{csv_path}: header must name the columns {', '.join(COLUMNS)}; missing {', '.join(missing)}")
    reader.fieldnames = header
    base = csv_path.resolve().parent
    rows: list[BatchRow] = []
    seen: dict[Path, int] = {}
    for record in reader:
        line = reader.line_num
        values = {k: (v or "").strip() for k, v in record.items() if isinstance(k, str)}
        if not any(values.values()):
            continue  # a blank line, as pandas skips it
        where = f"{csv_path} line {line}"
        if not values.get("data_path"):
            raise InputError(f"{where}: data_path is empty")
        row = BatchRow(
            len(rows), (base / values["data_path"]).resolve(), _evaluation_id(values.get("evaluation_id", ""), where)
        )
        if row.result in seen:
            raise InputError(
                f"{where}: evaluation_id {row.evaluation_id!r} again for a submission in {row.submission.parent} "
                f"(line {seen[row.result]} has it): both would write {row.result.name}"
            )
        seen[row.result] = line
        rows.append(row)
    if not rows:
        raise InputError(f"{csv_path}: no rows after the header")
    return rows


def read_batch_csv(path: str | Path) -> list[BatchRow]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{p}: cannot read the batch CSV ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{p}: the batch CSV is not UTF-8 text") from None
    return parse_batch_csv(text, p)


# ---------------------------------------------------------------- one row (a process of its own)
def evaluate_row(row: BatchRow, cfg: BatchConfig) -> float | None:
    """Score one row with the evaluator's `run`; returns the overall score. Errors propagate (exit 1 or 2)."""
    from csc_evaluator.config import Config
    from csc_evaluator.evaluate import run

    log.info("row %d (evaluation %s): %s -> %s", row.index, row.evaluation_id, row.submission, row.result)
    view = run(
        Config(
            submission=str(row.submission),
            truth=cfg.truth,
            test_manifest=cfg.test_manifest,
            output=str(row.result),
            scores_manifest=str(row.scores),
            instance_classes=cfg.instance_classes,
            dataset=cfg.dataset,
            workers=cfg.eval_workers,
            rules=cfg.rules,
        )
    )
    return view.overall_score


def row_argv(cfg: BatchConfig, *, csv_path: str, truth: str, test_manifest: str, dataset: str) -> list[str]:
    """The options of a one-row run (``--row`` is added by the caller): the same for a local process and a pod."""
    argv = [f"--csv-path={csv_path}", f"--truth={truth}", f"--rules={cfg.rules}"]
    if test_manifest:
        argv.append(f"--test-manifest={test_manifest}")
    if dataset:
        argv.append(f"--dataset={dataset}")
    if cfg.instance_classes:
        argv.append(f"--instance-classes={cfg.instance_classes}")
    return argv


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if ": error: " in ln or ": failed: " in ln]
    return (errors or lines or [""])[-1].strip()


def read_overall_score(result: Path) -> float | None:
    try:
        score = json.loads(result.read_text()).get("overall_score")
    except (OSError, ValueError, AttributeError):
        return None
    return float(score) if isinstance(score, int | float) else None


def _run_local_row(row: BatchRow, base_argv: Sequence[str], eval_workers: int) -> Outcome:
    """One row in a child process (``python -m csc_evaluator.batch ... --row I``), its log beside the results."""
    argv = [sys.executable, "-m", "csc_evaluator.batch", *base_argv, f"--eval-workers={eval_workers}"]
    argv.append(f"--row={row.index}")
    if not row.submission.exists():  # no process, and no log folder made where nothing is
        return Outcome(row, 2, error=f"{row.submission}: submission not found")
    t0 = time.perf_counter()
    try:
        with open(row.log, "w") as fh:
            rc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    except OSError as exc:  # e.g. the submission's folder is not writable: this row fails, the rest go on
        return Outcome(row, 2, error=f"cannot write {row.log} ({exc.strerror})")
    dt = time.perf_counter() - t0
    if rc != 0:
        return Outcome(row, rc if rc in (1, 2) else 1, error=_last_line(row.log) or f"exit code {rc}", seconds=dt)
    return Outcome(row, 0, overall_score=read_overall_score(row.result), seconds=dt)


def describe(o: Outcome) -> str:
    head = f"row {o.row.index} (evaluation {o.row.evaluation_id})"
    if o.exit_code == 0:
        score = "n/a" if o.overall_score is None else f"{o.overall_score:.6f}"
        return f"{head}: scored, overall_score {score} -> {o.row.result} ({o.seconds:.1f} s)"
    where = f" (log {o.row.log})" if o.row.log.is_file() else ""
    return f"{head}: FAILED (exit {o.exit_code}): {o.error}{where}"


def run_local(cfg: BatchConfig, rows: Sequence[BatchRow]) -> BatchReport:
    """Every row in its own process, ``cfg.workers`` at a time; one line per row on stdout as it ends."""
    base = row_argv(
        cfg,
        csv_path=str(Path(cfg.csv_path).resolve()),
        truth=str(Path(cfg.truth).resolve()),
        test_manifest=str(Path(cfg.test_manifest).resolve()) if cfg.test_manifest else "",
        dataset=str(Path(cfg.dataset).resolve()) if cfg.dataset else "",
    )
    workers = min(cfg.workers, len(rows))
    eval_workers = cfg.eval_workers or max(1, _cpus() // workers)
    log.info("scoring %d submissions, %d at a time (%d scoring processes each)", len(rows), workers, eval_workers)
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="batch") as pool:
        futures = [pool.submit(_run_local_row, r, base, eval_workers) for r in rows]
        for fut in as_completed(futures):
            o = fut.result()
            outcomes.append(o)
            print(describe(o), flush=True)
    return BatchReport(tuple(sorted(outcomes, key=lambda o: o.row.index)))


def _check_inputs(cfg: BatchConfig) -> None:
    if not Path(cfg.truth).is_dir():
        raise InputError(f"--truth {cfg.truth}: ground-truth zarr folder not found")
    for flag, value in (("--test-manifest", cfg.test_manifest), ("--dataset", cfg.dataset)):
        if value and not Path(value).is_file():
            raise InputError(f"{flag} {value}: file not found")


def run(cfg: BatchConfig) -> BatchReport | None:
    """Score the CSV's rows as configured; None when only a Job was written (``--kubernetes`` without ``--apply``)."""
    rows = read_batch_csv(cfg.csv_path)
    if cfg.row is not None:
        if cfg.row >= len(rows):
            raise InputError(f"--row {cfg.row}: {cfg.csv_path} has {len(rows)} data rows (0..{len(rows) - 1})")
        row = rows[cfg.row]
        return BatchReport((Outcome(row, 0, overall_score=evaluate_row(row, cfg)),))
    _check_inputs(cfg)
    if cfg.kubernetes:
        from csc_evaluator.k8sjob import submit

        return submit(cfg, rows)
    report = run_local(cfg, rows)
    print(f"batch-eval: {len(rows) - report.failed} of {len(rows)} rows scored, {report.failed} failed", flush=True)
    return report


if __name__ == "__main__":  # one row in a child process of run_local
    from csc_evaluator.cli import batch_main

    sys.exit(batch_main())
