"""Assessment errors.

AssessError
├── InvalidAnswer       the model's answer broke the schema or a rule (permanent once retried)
└── AssessUnavailable   no target of the `assess` route answered (transient: retried later)
"""

from __future__ import annotations

__all__ = ["AssessError", "AssessUnavailable", "InvalidAnswer"]


class AssessError(Exception):
    """Base of the pipeline's own errors."""

    transient: bool = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidAnswer(AssessError):
    """The answer does not parse, or breaks a validation rule; `reason` says which."""


class AssessUnavailable(AssessError):
    """The model could not be reached; the job goes back to the table for later."""

    transient = True
