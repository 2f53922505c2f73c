"""Serving: the HTTP API (:mod:`.app`) and :func:`run`, which starts it for ``serve``.

Nothing here imports FastAPI or prometheus_client at module level: with several workers the
Prometheus multiprocess folder must be set before prometheus_client is first imported.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..monitoring.database import located
from ..monitoring.performance import FEEDBACK_DB_ENV

if TYPE_CHECKING:
    from ..config import Config

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
ROOT_ENV = "MLSERVICE_ROOT"
APP_FACTORY = "mlgen_runtime.kinds:create_service_app"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _prepare_multiprocess_dir() -> Path:
    """An empty folder for the workers' shared metrics, set in the environment."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError(
            "prometheus_client was imported before the workers' metrics folder was set: start "
            "several workers through `serve` (or set PROMETHEUS_MULTIPROC_DIR before Python "
            "starts)."
        )
    configured = os.environ.get(MULTIPROC_ENV)
    folder = Path(configured) if configured else Path(tempfile.mkdtemp(prefix="prometheus-"))
    # Files of a previous run would add its dead workers' counts to this one's.
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def _prepare_feedback_db(config: Config) -> Path | None:
    """The workers' shared feedback store: a new temporary file unless one is configured
    (``$MLSERVICE_FEEDBACK_DB``, else ``serving.feedback_db``).

    Returns the temporary folder to remove at exit. A configured file is kept across restarts,
    so feedback still joins predictions made before one.
    """
    if os.environ.get(FEEDBACK_DB_ENV):
        return None
    if config.serving.feedback_db:
        os.environ[FEEDBACK_DB_ENV] = located(config.serving.feedback_db, config)
        return None
    folder = Path(tempfile.mkdtemp(prefix="mlservice-feedback-"))
    os.environ[FEEDBACK_DB_ENV] = str(folder / "feedback.sqlite")
    return folder


def run(config: Config, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve the API until interrupted.

    One worker runs uvicorn in this process. Several workers share their metrics through
    ``PROMETHEUS_MULTIPROC_DIR`` and their feedback store through ``MLSERVICE_FEEDBACK_DB``,
    and run under gunicorn with uvicorn workers when ``uvicorn-worker`` is installed, else
    under uvicorn's own process manager; workers build the app from ``config.root`` (so
    overrides given only in memory do not reach them).
    """
    import uvicorn

    from ..kinds import create_service_app
    from .connections import uvicorn_options

    if workers <= 1:
        uvicorn.run(
            create_service_app(config), host=host, port=port, **uvicorn_options(config.serving)
        )
        return
    _prepare_multiprocess_dir()
    os.environ[ROOT_ENV] = str(config.root)
    temporary = _prepare_feedback_db(config)
    try:
        if _installed("gunicorn") and _installed("uvicorn_worker"):
            _run_gunicorn(config, host, port, workers)
        else:
            uvicorn.run(
                APP_FACTORY,
                factory=True,
                host=host,
                port=port,
                workers=workers,
                **uvicorn_options(config.serving),
            )
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _run_gunicorn(config: Config, host: str, port: int, workers: int) -> None:
    from gunicorn.app.base import BaseApplication

    from .connections import gunicorn_worker

    def child_exit(server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        # Drops the dead worker's live gauges so they stop counting in scrapes.
        multiprocess.mark_process_dead(worker.pid)

    class Gunicorn(BaseApplication):
        def load_config(self) -> None:
            settings = {
                "bind": f"{host}:{port}",
                "workers": workers,
                "worker_class": gunicorn_worker(config.serving),
                "backlog": config.serving.backlog,
                "child_exit": child_exit,
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # Each worker builds its own app (and metrics) after the fork.
            from ..kinds import create_service_app

            return create_service_app(config)

    Gunicorn().run()
