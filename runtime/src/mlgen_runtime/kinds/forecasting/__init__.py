"""The *forecasting* kind: the next ``horizon`` values of one or many time series, with
prediction intervals, from their history and covariates.

Modules: data.py (regular series from rows; frequency, gaps, duplicates), models.py (seasonal
naive, ETS, LightGBM recursive or direct), metrics.py (MASE, sMAPE, RMSE, coverage; conformal
quantiles; the paired test), train.py (backtests, calibration, test, MLflow, the gate),
forecaster.py (what serving loads), serving.py and monitoring.py (the HTTP app, forecast error
from fed-back actuals, residual drift, seasonality change), batch.py (forecast-all).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..package import KindPackage

if TYPE_CHECKING:
    import pandas as pd

    from ...bundle import Bundle
    from ...config import Config
    from ..command import Command
    from .train import ForecastResult


class ForecastingKind(KindPackage):
    name = "forecasting"
    tasks: tuple[str, ...] = ("forecasting",)
    unsupported_commands: dict[str, str] = {
        "evaluate": "`train` prints the test windows' metrics beside seasonal naive's and logs "
        "them to MLflow, and `promote --version N` re-scores a version on the test windows.",
        "retrain": "run `train --data NEW_FILE`: a model trained on new data replaces the "
        "champion only if the gate finds it significantly better on the same test windows.",
        "drift": "the service watches forecast error, residual drift and seasonality from "
        "POST /feedback as it serves: see GET /monitoring and /metrics.",
        "compare": "champion/challenger rollouts are not available for forecasters yet; "
        "`promote --version N` compares a version with the champion on the test windows.",
        "investigate": "the investigation report covers tabular services so far; a "
        "forecaster's live error, residual drift and seasonality are on GET /monitoring.",
    }

    def validate(self, df: pd.DataFrame, config: Config) -> None:
        from .data import read_panel

        read_panel(df, config)

    def split(self, df: pd.DataFrame, config: Config) -> Any:
        from .data import read_panel, section
        from .train import check_length, cut

        # The data before the test windows, and all of it (the test windows are its end).
        panel = read_panel(df, config)
        horizon = check_length(config, panel)
        return cut(panel, section(config).test_windows * horizon), panel

    def baseline(self, config: Config) -> Any:
        from .data import season_length_of, section
        from .models import SeasonalNaive

        fc = section(config)
        # An inferred frequency is known only with the data: read_panel resolves it there.
        season = fc.season_length or (season_length_of(fc.frequency) if fc.frequency else 1)
        return SeasonalNaive(season)

    def candidates(self, config: Config) -> list[str]:
        from .data import section

        return list(section(config).candidates)

    def metrics(self, config: Config) -> list[str]:
        from .data import section
        from .metrics import METRICS

        primary = section(config).primary_metric
        return [primary, *(name for name in METRICS if name != primary)]

    def higher_is_better(self, metric: str) -> bool:
        from .metrics import HIGHER_IS_BETTER

        return HIGHER_IS_BETTER.get(metric, False)

    def comparison_test(self, config: Config) -> str:
        from .metrics import TEST

        return TEST

    def train(
        self, config: Config, data_path: str | Path | None = None, trials: int | None = None
    ) -> ForecastResult:
        from .train import train

        return train(config, data_path=data_path)

    def drift_signals(self, config: Config) -> list[str]:
        from .monitoring import DRIFT_SIGNALS

        return list(DRIFT_SIGNALS)

    def export_check(self, bundle: Bundle, sample: pd.DataFrame) -> dict[str, Any]:
        # The served model is the evaluated one (JSON state); there is no second path.
        return {"path": "json", "reason": "forecasters are served from their saved state"}

    def commands(self) -> list[Command]:
        from .batch import COMMAND

        return [COMMAND]
