"""One error hierarchy for every stage, mapped to exit codes by `cli.run_main`.

Exit codes follow STYLE.md: 0 ok, 1 failed (possibly retryable), 2 bad input.
A message must say what, where, and what was expected, on one line.
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class CscError(Exception):
    """Base of all csc errors; `exit_code` tells the CLI how to exit."""

    exit_code = EXIT_FAILED


class InputError(CscError):
    """The user gave us something we cannot use (file, option, value)."""

    exit_code = EXIT_BAD_INPUT


class ManifestError(InputError):
    """A manifest is missing, unreadable, of the wrong kind or fails its schema."""


class GeometryError(InputError):
    """Voxel sizes, translations or shapes that do not fit together."""


class SubmissionError(InputError):
    """A submission (zip or zarr) that cannot be scored or packed as asked."""


class StageFailed(CscError):
    """A stage failed for a reason that is not the input's fault (retryable)."""

    exit_code = EXIT_FAILED
