"""Warnings a run gives its user: printed by default, through the Python API and the CLI.

A cause (the eligible pool smaller than the cohort goal, a round without an update, an
evaluation with non-finite values) is warned about once per run; every round's own
message stays in the rounds table (``message``)."""
from __future__ import annotations

import warnings


class RunWarning(UserWarning):
    """A run that may not be doing what its user expects (``fedpop.RunWarning``)."""


class WarnOnce:
    """Emits each cause's first message as a `RunWarning`; later ones of the same cause are dropped."""

    def __init__(self):
        self.seen: set[str] = set()

    def __call__(self, cause: str, message: str) -> bool:
        if cause in self.seen:
            return False
        self.seen.add(cause)
        # a fresh registry: the warning shows even when an earlier run in this interpreter
        # printed the same text (Python's default filter shows a text once per location)
        warnings.warn_explicit(f"{message} [shown once per run]", RunWarning, "fedpop", 0, module="fedpop",
                               registry={})
        return True
