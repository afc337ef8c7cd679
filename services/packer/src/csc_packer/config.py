"""Configuration of csc-pack (flags, or the same fields in a --config YAML/JSON file)."""

from dataclasses import dataclass, field
from pathlib import Path

from csc_common.errors import InputError


@dataclass(frozen=True, kw_only=True)
class Config:
    """Pack processed volumes into the challenge's submission zip, or check any submission zip (--check).

    Two modes: packing needs ``--processed`` and ``--output``; ``--check ZIP``
    takes neither (it writes nothing), so giving both forms at once is refused.
    """

    processed: str = field(default="", metadata={"help": "processed manifest (processed.json) to pack"})
    test_manifest: str = field(
        default="",
        metadata={
            "help": "test crop manifest CSV (path or URL); default: the challenge's, fetched at run time "
            "(override the URL with CSC_TEST_CROP_MANIFEST_URL)"
        },
    )
    output: str = field(
        default="", metadata={"help": "submission manifest to write (submission.json); the zip goes beside it"}
    )
    strict: bool = field(
        default=False, metadata={"help": "fail when a (crop, class) row of the test manifest would be scored missing"}
    )
    check: str = field(
        default="",
        metadata={
            "help": "check this zip (any submission, hand-made too) against the test manifest and the "
            "evaluator's limits instead of packing"
        },
    )

    def __post_init__(self) -> None:
        if self.check:
            given = [flag for flag, value in (("--processed", self.processed), ("--output", self.output)) if value]
            if given:
                raise InputError(
                    f"--check {self.check} checks a zip and writes nothing; it takes no {' or '.join(given)} "
                    "(drop --check to pack, or drop those flags to check)"
                )
            return
        if not self.processed:
            raise InputError("--processed is required (the postprocessor's processed.json), or use --check ZIP")
        if not self.output:
            raise InputError("--output is required (e.g. data/submission.json)")
        if Path(self.output).suffix != ".json":
            raise InputError(f"{self.output}: the output manifest must be a .json file")
