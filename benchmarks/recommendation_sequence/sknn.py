import itertools

from harness import evaluate, np, runtime_scorer, sp  # noqa: F401


def sessions(fit, gap):
    order = np.lexsort((np.arange(len(fit)), fit.time, fit.user))
    u, it, t = fit.user[order], fit.item[order], fit.time[order]
    new = np.r_[True, (np.diff(u) != 0) | (np.diff(t) > gap)]
    sid = np.cumsum(new) - 1
    owner = u[new]
    S = sp.csr_matrix((np.ones(len(it), np.float32), (sid, it)), shape=(sid[-1] + 1, fit.n_items))
    S.data[:] = 1.0
    S.sum_duplicates()
    S.data[:] = 1.0
    return S, owner


def make(gap, half, K, norm, alpha=0.0):
    def scorer(fit, users):
        S, owner = sessions(fit, gap)
        size = np.asarray(S.sum(axis=1)).ravel()
        q = fit.recency(half)[users]
        sim = (q @ S.T).toarray()
        sim /= np.power(size, norm)[None]
        sim[owner[None, :] == users[:, None]] = 0
        if K < sim.shape[1]:
            thr = -np.partition(-sim, K, axis=1)[:, K : K + 1]
            sim[sim < thr] = 0
        pop = np.asarray(S.sum(axis=0)).ravel()
        sc = sp.csr_matrix(sim) @ S
        sc = np.asarray(sc.toarray()) / np.power(pop + 1, alpha)[None]
        return sc

    return scorer


for gap, half, K, norm in itertools.product([3600, 10**10], [3.0, 10.0], [50, 200], [0.5]):
    print(gap, half, K, norm, evaluate(make(gap, half, K, norm), ("val",)), flush=True)
