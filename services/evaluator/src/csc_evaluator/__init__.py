"""csc_evaluator: score a submission exactly by the challenge's rules."""

__version__ = "0.1.0"
