"""*Batch* recommendations: ``python -m <package> recommend-all --out recs.parquet`` writes the
champion's top k for every user it knows, one row per (user, rank), for jobs that precompute
recommendations (e-mails, caches) instead of asking the API.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ...config import Config
from ...errors import UsageError
from ...fallback import CHAMPION_DIR, fallback_dir
from ..command import Command
from .data import section
from .recommender import BATCH_USERS, Recommender, load_recommender


def recommend_all(recommender: Recommender, k: int, exclude_seen: bool = True) -> pd.DataFrame:
    """Columns user, rank (1 = best), item, score; users in index order, ranks ascending.

    The ranking is :meth:`Recommender.top_codes`, the one ``/recommend`` answers with.
    """
    users = np.flatnonzero(np.diff(recommender.history.indptr) > 0)
    frames = []
    for start in range(0, len(users), BATCH_USERS):
        batch = users[start : start + BATCH_USERS]
        codes, scores = recommender.top_codes(batch, k, exclude_seen)
        rows, ranks = np.nonzero(codes >= 0)
        frames.append(
            pd.DataFrame(
                {
                    "user": recommender.users[batch[rows]],
                    "rank": ranks + 1,
                    "item": recommender.items[codes[rows, ranks]],
                    "score": scores[rows, ranks],
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["user", "rank", "item", "score"])
    return pd.concat(frames, ignore_index=True)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="the Parquet (or .csv) file to write")
    parser.add_argument("--k", type=int, help="items per user (default: recommendation.k)")
    parser.add_argument(
        "--include-seen",
        action="store_true",
        help="also recommend items a user already used (default: excluded)",
    )


def _run(config: Config, args: argparse.Namespace) -> int:
    rec = section(config)
    k = args.k or rec.k
    if not 1 <= k <= rec.max_k:
        raise UsageError(f"--k must be from 1 to recommendation.max_k ({rec.max_k}), not {k}.")
    # The exported champion: what serving answers with (written at every promotion).
    recommender = load_recommender(fallback_dir(config, CHAMPION_DIR))
    table = recommend_all(recommender, k, exclude_seen=not args.include_seen)
    table = table.rename(columns={"user": rec.user_column, "item": rec.item_column})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        table.to_csv(out, index=False)
    else:
        table.to_parquet(out, index=False)
    users = table[rec.user_column].nunique()
    print(
        f"Wrote {len(table)} recommendations ({k} per user) for {users} users of "
        f"{recommender.metadata.get('model_name', 'model')} "
        f"v{recommender.metadata.get('model_version', '?')} to {out}"
    )
    return 0


COMMAND = Command(
    name="recommend-all",
    help="write the champion's top-k items for every known user to a Parquet file",
    arguments=_arguments,
    run=_run,
)
