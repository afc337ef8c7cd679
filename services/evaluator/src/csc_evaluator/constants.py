"""Scoring constants, each overridable by the original scorer's environment variable (UPSTREAM.md §9.5).

Read once per run (``Constants.from_env()``) and passed to the workers
explicitly, so a worker process never sees a different value than the parent.
"""

import math
import os
from dataclasses import dataclass

from csc_common.env import env_number as _env
from csc_common.submission.zipsafety import ZipLimits

_ZIP = ZipLimits()


@dataclass(frozen=True)
class Constants:
    """Every number the rules depend on. Defaults are the official scorer's."""

    final_instance_ratio_cutoff: float = 10.0  # FINAL_INSTANCE_RATIO_CUTOFF
    initial_instance_ratio_cutoff: float = 50.0  # INITIAL_INSTANCE_RATIO_CUTOFF
    instance_ratio_factor: float = 5.0  # INSTANCE_RATIO_FACTOR
    max_overlap_edges: int = 5_000_000  # MAX_OVERLAP_EDGES
    mcmf_cost_scale: int = 1_000_000  # MCMF_COST_SCALE
    max_distance_cap_eps: float = 1e-4  # MAX_DISTANCE_CAP_EPS (read for parity; unused by the rules, as upstream)
    # Zip-safety limits: defaults and env parsing (MAX_UNCOMPRESSED_SIZE, CSC_MAX_ZIP_MEMBERS,
    # CSC_MAX_COMPRESSION_RATIO) belong to csc_common.submission.zipsafety.ZipLimits, shared with csc-pack --check.
    max_uncompressed_size: int = _ZIP.max_uncompressed_size  # bytes
    max_zip_members: int = _ZIP.max_members
    max_compression_ratio: float = _ZIP.max_compression_ratio

    @classmethod
    def from_env(cls) -> "Constants":
        d = cls()
        z = ZipLimits.from_env()
        return cls(
            final_instance_ratio_cutoff=_env("FINAL_INSTANCE_RATIO_CUTOFF", d.final_instance_ratio_cutoff, float),
            initial_instance_ratio_cutoff=_env("INITIAL_INSTANCE_RATIO_CUTOFF", d.initial_instance_ratio_cutoff, float),
            instance_ratio_factor=_env("INSTANCE_RATIO_FACTOR", d.instance_ratio_factor, float),
            max_overlap_edges=_env("MAX_OVERLAP_EDGES", d.max_overlap_edges, int),
            mcmf_cost_scale=_env("MCMF_COST_SCALE", d.mcmf_cost_scale, int),
            max_distance_cap_eps=_env("MAX_DISTANCE_CAP_EPS", d.max_distance_cap_eps, float),
            max_uncompressed_size=z.max_uncompressed_size,
            max_zip_members=z.max_members,
            max_compression_ratio=z.max_compression_ratio,
        )

    @property
    def zip_limits(self) -> ZipLimits:
        """The zip-safety limits these constants carry, for ``csc_common.submission.zipsafety``."""
        return ZipLimits(self.max_uncompressed_size, self.max_zip_members, self.max_compression_ratio)

    def ratio_cutoff(self, n_gt: int) -> float:
        """Most predicted instances allowed per GT instance: ``10 + 50 * exp(-nG / 5)``."""
        return float(
            self.final_instance_ratio_cutoff
            + self.initial_instance_ratio_cutoff * math.exp(-n_gt / self.instance_ratio_factor)
        )


def env_max_workers() -> int | None:
    """``MAX_WORKERS`` or, failing that, the legacy ``MAX_INSTANCE_THREADS + MAX_SEMANTIC_THREADS``."""
    if os.environ.get("MAX_WORKERS", "").strip():
        return int(_env("MAX_WORKERS", 1, int))
    legacy = [n for n in ("MAX_INSTANCE_THREADS", "MAX_SEMANTIC_THREADS") if os.environ.get(n, "").strip()]
    if legacy:
        return int(sum(_env(n, 1, int) for n in legacy))
    return None
