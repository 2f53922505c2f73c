"""Every failure a service's user can cause or fix, as one named error class.

Messages say what is wrong, where, and how to fix it. The command line prints
``error: <message>`` for any :class:`ServiceError` and exits with status 2; the HTTP API answers
its own failures in one JSON shape (:class:`~mlgen_runtime.serving.errors.ApiError`) and turns
a :class:`FeedbackError` into 404 or 409.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class ConfigError(ServiceError):
    """The service configuration is missing or invalid."""


class DataValidationError(ServiceError, ValueError):
    """The training data does not fit the configuration."""


class RegistryError(ServiceError):
    """A registry operation cannot be done as asked."""


class CompareError(ServiceError):
    """There is nothing to compare (no log, no labelled predictions of a variant)."""


class UsageError(ServiceError):
    """A command was given a combination of options it refuses."""


class RequestError(ServiceError, ValueError):
    """A request a model cannot answer as asked (an unknown filter column, an empty item list,
    k out of range): the API answers it with a 4xx naming the problem."""


class FeedbackError(ServiceError):
    """Feedback that cannot be joined; ``kind`` is ``unknown`` or ``duplicate``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class NotCompilable(Exception):
    """The pipeline has a step the fast path does not reproduce; serve it as it is.

    Not a failure of the user's: the fast serving paths (serving/fastpath.py, onnx_export.py)
    raise it, and choosing a path catches it and records its message as the reason.
    """
