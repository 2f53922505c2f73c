"""The HTTP app, for servers that import one: ``uvicorn <package>.app:create_app --factory``.

``python -m <package> serve`` starts the same app (several workers under gunicorn).
"""

from __future__ import annotations

from fastapi import FastAPI
from mlgen_runtime.kinds import create_service_app


def create_app() -> FastAPI:
    """The service's API, built from configs/config.yaml and the registry's champion."""
    return create_service_app()
