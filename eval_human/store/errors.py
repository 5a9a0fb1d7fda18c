"""The study store's errors: the message names the offending value, and nothing was written."""

from __future__ import annotations


class StudyError(ValueError):
    """Bad input to the study store; the message names the offending value. Nothing was written."""


class AuthenticationError(StudyError):
    """A token (or login) that matches no rater."""


class NotAssignedError(StudyError):
    """A rater tried to see or rate an item that is not in their assignment."""
