"""In-process time of one Recommender.recommend call (k 10) for 200 known users, EASE without
and with its SLIT part, fitted on 80% of MovieLens; three turns each, alternating.

    python latency.py
"""

import time

from harness import FIT
from mlgen_runtime.kinds.recommendation.data import ItemMetadata
from mlgen_runtime.kinds.recommendation.recommender import fit_recommender

recs = {
    w: fit_recommender("ease", {"transition": w}, 42, FIT, ItemMetadata({})) for w in (0.0, 1.0)
}
users = [r.item() for r in recs[0.0].users[:200]]
for turn in range(3):
    for w, rec in recs.items():
        t = time.perf_counter()
        for u in users:
            rec.recommend(u, 10)
        ms = (time.perf_counter() - t) / len(users) * 1000
        print(turn, w, f"{ms:.2f} ms per /recommend call (in process)", flush=True)
