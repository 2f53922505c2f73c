"""What adopting a model yields, whatever its format: the loaded model as serving takes it and
what is known about where it came from, and the error every refusal raises."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata as distributions
from typing import Any

from ..errors import ServiceError


class AdoptionError(ServiceError):
    """The model cannot be served as it is; the message says why and what to do."""


@dataclass(frozen=True)
class Adopted:
    """A loaded model, as serving takes it, with what is known about where it came from."""

    model: Any
    format: str
    source: str
    #: Input columns the model names itself (None: it does not name them).
    inputs: list[str] | None
    #: Installed versions of the libraries the model's predictions depend on.
    libraries: dict[str, str]
    #: Requirements the model declares (MLflow models), as written.
    requirements: list[str]


def installed_versions(names: list[str]) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = distributions.version(name)
        except distributions.PackageNotFoundError:
            continue
    return found
