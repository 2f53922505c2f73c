import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from harness import evaluate, np, runtime_scorer, sp  # noqa: F401

torch.set_num_threads(1)
L = int(sys.argv[1]) if len(sys.argv) > 1 else 50
EPOCHS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
D = int(sys.argv[3]) if len(sys.argv) > 3 else 64
NEG = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
WIN = int(sys.argv[5]) if len(sys.argv) > 5 else 1


def sequences(fit):
    time_ = fit.time
    order = np.lexsort((np.arange(len(fit)), time_, fit.user))
    u, it = fit.user[order], fit.item[order]
    starts = np.r_[0, np.flatnonzero(np.diff(u)) + 1, len(u)]
    return {int(u[a]): it[a:b] + 1 for a, b in zip(starts[:-1], starts[1:], strict=True)}  # 0 = pad


class SASRec(nn.Module):
    def __init__(self, n_items, d, L, blocks=2, heads=1, drop=0.2):
        super().__init__()
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos = nn.Embedding(L, d)
        layer = nn.TransformerEncoderLayer(d, heads, d * 2, drop, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(drop)
        self.L = L

    def forward(self, seq):
        x = self.item(seq) * math.sqrt(self.item.embedding_dim) + self.pos.weight[None]
        x = self.drop(x)
        mask = torch.triu(torch.ones(self.L, self.L, dtype=torch.bool), 1)
        h = self.enc(x, mask=mask, src_key_padding_mask=(seq == 0))
        return self.norm(h)


def scorer(fit, users):
    torch.manual_seed(42)
    rng = np.random.default_rng(42)
    seqs = sequences(fit)
    n = fit.n_items
    # training windows: each user's sequence in chunks of L+1 ending at its end
    X, Y = [], []
    for s in seqs.values():
        for end in range(len(s), 1, -L):
            chunk = s[max(0, end - L - 1) : end]
            inp = np.zeros(L, np.int64)
            tgt = np.zeros((L, WIN), np.int64)
            x = chunk[:-1]
            inp[L - len(x) :] = x
            for w in range(WIN):
                y = s[max(0, end - L - 1) + 1 + w : end + w] if True else None
                y = y[: len(x)]
                tgt[L - len(x) : L - len(x) + len(y), w] = y
            X.append(inp)
            Y.append(tgt)
    X = torch.tensor(np.array(X))
    Y = torch.tensor(np.array(Y))
    model = SASRec(n, D, L)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    B = 64
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.tensor(rng.permutation(len(X)))
        total = 0.0
        for i in range(0, len(X), B):
            idx = perm[i : i + B]
            h = model(X[idx])  # b, L, d
            y = Y[idx]  # b, L, W
            valid = y > 0
            neg = torch.tensor(rng.integers(1, n + 1, NEG))
            cand = torch.cat([neg])
            emb = model.item.weight
            pos_logit = (h.unsqueeze(2) * emb[y]).sum(-1)  # b L W
            neg_logit = h @ emb[cand].T  # b L NEG
            logits = torch.cat(
                [pos_logit.unsqueeze(-1), neg_logit.unsqueeze(2).expand(-1, -1, WIN, -1)], -1
            )
            loss = -F.log_softmax(logits, -1)[..., 0]
            loss = (loss * valid).sum() / valid.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss)
        print(epoch, round(total, 2), round(time.perf_counter() - t0, 1), flush=True)
    model.eval()
    with torch.no_grad():
        inp = np.zeros((len(users), L), np.int64)
        for r, u in enumerate(users):
            s = seqs[int(u)][-L:]
            inp[r, L - len(s) :] = s
        h = model(torch.tensor(inp))[:, -1]
        scores = (h @ model.item.weight[1:].T).numpy()
    return scores


print(sys.argv[1:], evaluate(scorer))
