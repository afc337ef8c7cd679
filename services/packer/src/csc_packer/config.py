"""Configuration of csc-pack (flags, or the same fields in a --config YAML/JSON file)."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Config:
    """Pack processed volumes into the challenge's submission zip, or check any submission zip (--check)."""

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
