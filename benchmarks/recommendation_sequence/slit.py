import sys

from harness import evaluate, np, runtime_scorer, sp  # noqa: F401
from mlgen_runtime.kinds.recommendation.models import _spd_inverse
from threadpoolctl import threadpool_limits


def kept_items(fit, n=3000):
    used = np.asarray((fit.matrix > 0).sum(axis=0)).ravel()
    order = np.lexsort((np.arange(len(used)), -used))[:n]
    return np.sort(order[used[order] > 0])


def slit_matrices(fit, kept, past, hs, future, ht):
    order = np.lexsort((np.arange(len(fit)), fit.time, fit.user))
    u, it = fit.user[order], fit.item[order]
    col = np.full(fit.n_items, -1)
    col[kept] = np.arange(len(kept))
    c = col[it]
    n = len(u)
    m = len(kept)

    def build_m(offsets, weight):
        rows, cols, vals = [], [], []
        for d in offsets:
            if d >= 0:
                src = np.arange(0, n - d)
                tgt = src + d
            else:
                tgt = np.arange(-d, n)
                src = tgt  # row t, item t+d
                tgt = np.arange(0, n + d)
                src = tgt - d
            # row index src (position t), item at position tgt
            same = u[src] == u[tgt]
            ok = same & (c[tgt] >= 0)
            rows.append(src[ok])
            cols.append(c[tgt][ok])
            vals.append(np.full(ok.sum(), weight(d), np.float64))
        return sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, m)
        )

    # source: items at t-1 .. t-past (d = -1..-past), weight 0.5**((|d|-1)/hs)
    S = build_m(range(-1, -past - 1, -1), lambda d: 0.5 ** ((-d - 1) / hs))
    # target: items at t .. t+future-1
    T = build_m(range(0, future), lambda d: 0.5 ** (d / ht) if ht > 0 else 1.0)
    keep = np.asarray(S.sum(axis=1)).ravel() > 0
    return S[keep], T[keep]


def fit_slit(fit, l2, past, hs, future, ht, alpha=0.0, n=3000):
    kept = kept_items(fit, n)
    S, T = slit_matrices(fit, kept, past, hs, future, ht)
    G = (S.T @ S).toarray()
    B = (S.T @ T).toarray()
    if alpha > 0:
        X = (fit.matrix[:, kept] > 0).astype(np.float64)
        XX = (X.T @ X).toarray()
        G = alpha * XX + (1 - alpha) * G
        B = alpha * XX + (1 - alpha) * B
    G[np.diag_indices_from(G)] += l2
    with threadpool_limits(limits=1):
        W = _spd_inverse(G) @ B
    return kept, W.astype(np.float32)


def make(l2, past, hs, future, ht, ease_w=0.0, alpha=0.0):
    def scorer(fit, users):
        kept, W = fit_slit(fit, l2, past, hs, future, ht, alpha)
        q = fit.recency(hs)[users][:, kept]
        out = np.full((len(users), fit.n_items), -1e30, np.float32)
        s = np.asarray(q @ W, dtype=np.float32)
        if ease_w > 0:
            e = runtime_scorer("ease", {})(fit, users)[:, kept]
            s = s / np.abs(s).max(1, keepdims=True) * ease_w + e / np.abs(e).max(1, keepdims=True)
        out[:, kept] = s
        return out

    return scorer


if __name__ == "__main__":
    grid = [
        (float(a), int(b), float(c), int(d), float(e))
        for a, b, c, d, e in (s.split(",") for s in sys.argv[1:])
    ]
    for g in grid:
        print(g, evaluate(make(*g), ("val",)), flush=True)
