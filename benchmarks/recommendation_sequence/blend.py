"""EASE (the runtime's, with its parameters as given) + w x SLIT (this folder's slit.py), each
scaled to 1 at its largest per user: the grid of the experiments before SLIT joined EASE.

    python blend.py L2,PAST,PAST_HALF_LIFE,FUTURE,FUTURE_HALF_LIFE,W [...] [--test]
"""

import sys

from harness import evaluate, np, runtime_scorer, sp  # noqa: F401
from slit import fit_slit


def make(l2, past, hs, future, ht, w):
    def scorer(fit, users):
        kept, transitions = fit_slit(fit, l2, past, hs, future, ht)
        s = np.asarray(fit.recency(hs)[users][:, kept] @ transitions, dtype=np.float32)
        e = runtime_scorer("ease", {"transition": 0.0})(fit, users)[:, kept]
        out = np.full((len(users), fit.n_items), -1e30, np.float32)
        out[:, kept] = s / np.abs(s).max(1, keepdims=True) * w + e / np.abs(e).max(1, keepdims=True)
        return out

    return scorer


which = ("val", "test") if "--test" in sys.argv else ("val",)
for arg in (a for a in sys.argv[1:] if not a.startswith("--")):
    l2, past, hs, future, ht, w = arg.split(",")
    g = (float(l2), int(past), float(hs), int(future), float(ht), float(w))
    print(g, evaluate(make(*g), which), flush=True)
