"""A *recommender* is a trained model ready to answer: top-k items for a user, or items related
to a set of items, with the fallbacks of cold start and the response naming the one used.

- a known user (one with training interactions): the model's scores of their history
  (strategy ``personalised``; ``popularity`` or ``content`` when the model is one of those);
- an unknown user: the most popular items (``popularity``);
- similar items: known items go through the model as an ad-hoc history (``similar_items``);
  items the model does not know but whose metadata is known, through the content model
  (``content``); nothing known, the most popular items (``popularity``). The items asked about
  are never returned.

Filters keep the items whose metadata column holds one of the values (a word or a
``|``-separated tag, case-insensitive). Training evaluates the very object serving loads
(:func:`load_recommender`), so the served behaviour is the measured one.

The model folder of a bundle (see bundle.py) holds ``recommender.json`` (family, parameters,
id types), ``arrays.npz`` (the index, the training history and its recency weights, the
model's and the content model's arrays) and ``items.json`` (item metadata): numpy arrays and
JSON, no pickle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ...bundle import MODEL_DIR, load_metadata
from ...errors import RequestError
from .data import Interactions, ItemMetadata, tokens
from .models import Content, Model, build, from_arrays, pack_csr, unpack_csr

PERSONALISED = "personalised"
SIMILAR_ITEMS = "similar_items"
CONTENT = "content"
POPULARITY = "popularity"
MODEL_FILE = "recommender.json"
ARRAYS_FILE = "arrays.npz"
ITEMS_FILE = "items.json"
# Users scored at once in batch work (evaluation, recommend-all): bounds the dense score rows.
BATCH_USERS = 512


@dataclass(frozen=True)
class Recommendation:
    """Ranked items (original ids), their scores, and which strategy produced them."""

    items: list[Any]
    scores: list[float]
    strategy: str


def _strategy(model: Model) -> str:
    if not model.personal:
        return POPULARITY
    return CONTENT if model.family == CONTENT else PERSONALISED


class Recommender:
    """A fitted model with its index, its users' histories and the cold-start fallbacks."""

    def __init__(
        self,
        model: Model,
        users: np.ndarray,
        items: np.ndarray,
        history: sp.csr_matrix,
        content: Content | None,
        item_metadata: ItemMetadata,
        metadata: dict[str, Any] | None = None,
        recent: sp.csr_matrix | None = None,
    ) -> None:
        self.model = model
        self.users = users
        self.items = items
        self.history = sp.csr_matrix(history, dtype=np.float32)
        # What the model scores for a known user: the history weighted by recency (the same
        # items as ``history``), for the models that score so.
        self.recent = self.history if recent is None else sp.csr_matrix(recent, dtype=np.float32)
        self.content = content
        self.item_metadata = item_metadata
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.popularity = np.asarray((self.history > 0).sum(axis=0), dtype=np.float64).ravel()
        self._user_codes = {_plain(user): code for code, user in enumerate(users.tolist())}
        self._item_codes = {_plain(item): code for code, item in enumerate(items.tolist())}
        self._numeric_items = items.dtype.kind in "iu"
        self._numeric_users = users.dtype.kind in "iu"
        self._active = np.diff(self.history.indptr) > 0

    # -- what the model knows --------------------------------------------------------------
    @property
    def family(self) -> str:
        return self.model.family

    def user_code(self, user_id: Any) -> int | None:
        """The index row of ``user_id`` if the model has training interactions of it."""
        code = self._user_codes.get(_key(user_id, self._numeric_users))
        return code if code is not None and self._active[code] else None

    def item_code(self, item_id: Any) -> int | None:
        """The index column of ``item_id`` (known from interactions or metadata), or None."""
        return self._item_codes.get(_key(item_id, self._numeric_items))

    def knows_user(self, user_id: Any) -> bool:
        return self.user_code(user_id) is not None

    def knows_item(self, item_id: Any) -> bool:
        """True when the item has training interactions (metadata alone is cold start)."""
        code = self.item_code(item_id)
        return code is not None and self.popularity[code] > 0

    def filter_columns(self) -> list[str]:
        return list(self.item_metadata.columns)

    @cached_property
    def _shares(self) -> np.ndarray:
        total = self.popularity.sum()
        return self.popularity / total if total else self.popularity

    def item_popularity_share(self, item_ids: Sequence[Any]) -> np.ndarray:
        """Each item's share of the training interactions (users per item / all), 0 if unknown:
        the reference distribution of item-popularity drift."""
        codes = [self.item_code(item) for item in item_ids]
        return np.array([0.0 if code is None else self._shares[code] for code in codes])

    # -- answering -------------------------------------------------------------------------
    def recommend(
        self,
        user_id: Any,
        k: int,
        exclude_seen: bool = True,
        filters: dict[str, list[str]] | None = None,
    ) -> Recommendation:
        """The top ``k`` items for ``user_id`` (an unknown user gets the most popular)."""
        self._check_k(k)
        allowed = self._filter_mask(filters)
        code = self.user_code(user_id)
        if code is None:
            return self._answer(self._popular_scores(), k, allowed, None, POPULARITY)
        history = self.recent[[code]]
        scores = self.model.scores(np.array([code]), history)[0]
        seen = history.indices if exclude_seen else None
        return self._answer(scores, k, allowed, seen, _strategy(self.model))

    def similar(
        self, items: Sequence[Any], k: int, filters: dict[str, list[str]] | None = None
    ) -> Recommendation:
        """Items related to ``items`` (an ad-hoc basket, a new user's few items)."""
        self._check_k(k)
        if not len(items):
            raise RequestError("items is empty: give at least one item id to find similar ones.")
        allowed = self._filter_mask(filters)
        codes = sorted({c for c in (self.item_code(item) for item in items) if c is not None})
        asked = np.asarray(codes, dtype=np.int64)
        used = asked[self.popularity[asked] > 0] if len(asked) else asked
        if self.model.personal and len(used):
            history = self._basket(used)
            scores = self.model.scores(np.array([-1]), history)[0]
            return self._answer(scores, k, allowed, asked, SIMILAR_ITEMS)
        described = self._described(asked)
        if self.content is not None and len(described):
            scores = self.content.scores(np.array([-1]), self._basket(described))[0]
            return self._answer(scores, k, allowed, asked, CONTENT)
        return self._answer(self._popular_scores(), k, allowed, asked, POPULARITY)

    def top_codes(
        self, user_codes: np.ndarray, k: int, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(item codes, scores) of the top ``k`` for each of these users, -1 where fewer than
        ``k`` items can be recommended; users are index rows with training history. Batch
        evaluation and recommend-all use this; it ranks exactly as :meth:`recommend`."""
        ranked = np.full((len(user_codes), k), -1, dtype=np.int64)
        values = np.full((len(user_codes), k), -np.inf, dtype=np.float32)
        for start in range(0, len(user_codes), BATCH_USERS):
            batch = np.asarray(user_codes[start : start + BATCH_USERS])
            history = self.recent[batch]
            scores = np.array(self.model.scores(batch, history), dtype=np.float32)
            if exclude_seen:
                rows = np.repeat(np.arange(len(batch)), np.diff(history.indptr))
                scores[rows, history.indices] = -np.inf
            codes, top = _top_k(scores, k)
            ranked[start : start + len(batch)] = codes
            values[start : start + len(batch)] = top
        return ranked, values

    def ids_of(self, codes: np.ndarray) -> list[Any]:
        """The original ids of item codes (JSON-able Python values)."""
        return [_plain(item) for item in self.items[codes].tolist()]

    # -- helpers ---------------------------------------------------------------------------
    def _check_k(self, k: int) -> None:
        max_k = int(self.metadata.get("max_k", 100))
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= max_k:
            raise RequestError(f"k must be a whole number from 1 to {max_k} (max_k), not {k!r}.")

    def _popular_scores(self) -> np.ndarray:
        if not self.model.personal:
            # A (recent) popularity model is its own cold start.
            return self.model.scores(np.array([-1]), self.history[:0])[0]
        return self.popularity.astype(np.float32)

    def _basket(self, codes: np.ndarray) -> sp.csr_matrix:
        data = np.ones(len(codes), dtype=np.float32)
        return sp.csr_matrix(
            (data, codes, np.array([0, len(codes)])), shape=(1, len(self.items)), dtype=np.float32
        )

    def _described(self, codes: np.ndarray) -> np.ndarray:
        texts = self.item_metadata.texts()
        return np.asarray([c for c in codes if texts and texts[c].strip(" |")], dtype=np.int64)

    @cached_property
    def _token_index(self) -> dict[str, dict[str, np.ndarray]]:
        index: dict[str, dict[str, np.ndarray]] = {}
        for column, values in self.item_metadata.columns.items():
            lists: dict[str, list[int]] = {}
            for code, value in enumerate(values):
                for token in tokens(value):
                    lists.setdefault(token, []).append(code)
            index[column] = {token: np.asarray(codes) for token, codes in lists.items()}
        return index

    def _filter_mask(self, filters: dict[str, list[str]] | None) -> np.ndarray | None:
        """Items allowed by every filter column (one of its values matches), or None."""
        if not filters:
            return None
        allowed = np.ones(len(self.items), dtype=bool)
        for column, values in filters.items():
            if column not in self._token_index:
                known = ", ".join(self.filter_columns()) or "none: the model has no item metadata"
                raise RequestError(f"Unknown filter column {column!r}; filter columns: {known}.")
            if isinstance(values, str) or not isinstance(values, list | tuple):
                raise RequestError(
                    f"filters.{column} must be a list of values, e.g. {{{column!r}: [...]}}."
                )
            matches = np.zeros(len(self.items), dtype=bool)
            for value in values:
                matches[self._matching(column, value)] = True
            allowed &= matches
        return allowed

    def _matching(self, column: str, value: Any) -> np.ndarray:
        index = self._token_index[column]
        whole = str(value).strip().lower()
        if whole in index:
            return index[whole]
        # A value of several words matches items having all of them.
        words = tokens(whole) - {whole}
        if not words:
            return np.zeros(0, dtype=np.int64)
        found = [set(index.get(word, np.zeros(0, np.int64)).tolist()) for word in words]
        return np.asarray(sorted(set.intersection(*found)), dtype=np.int64)

    def _answer(
        self,
        scores: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        excluded: np.ndarray | None,
        strategy: str,
    ) -> Recommendation:
        scores = np.array(scores, dtype=np.float32)
        if allowed is not None:
            scores[~allowed] = -np.inf
        if excluded is not None and len(excluded):
            scores[excluded] = -np.inf
        codes, values = _top_k(scores[None, :], k)
        keep = codes[0] >= 0
        return Recommendation(
            items=self.ids_of(codes[0][keep]),
            scores=[float(value) for value in values[0][keep]],
            strategy=strategy,
        )

    # -- files -----------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write the model folder of a bundle (see the module docstring)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "users": self.users,
            "items": self.items,
            **pack_csr("history", self.history),
            **(pack_csr("recent", self.recent) if self.recent is not self.history else {}),
            **{f"model.{name}": array for name, array in self.model.arrays().items()},
        }
        if self.content is not None and self.content is not self.model:
            arrays.update({f"content.{n}": a for n, a in self.content.arrays().items()})
        np.savez(folder / ARRAYS_FILE, **arrays)
        description = {
            "family": self.model.family,
            "params": self.model.params,
            "seed": self.model.seed,
            "content": self.content is not None,
        }
        (folder / MODEL_FILE).write_text(json.dumps(description, indent=2, sort_keys=True))
        (folder / ITEMS_FILE).write_text(json.dumps(self.item_metadata.columns))


def fit_recommender(
    family: str,
    params: dict[str, Any],
    seed: int,
    data: Interactions,
    item_metadata: ItemMetadata,
    metadata: dict[str, Any] | None = None,
    content: Content | None = None,
) -> Recommender:
    """A recommender of ``family`` fitted on ``data`` (its content fallback too, when items
    have metadata). ``content``: a fallback already fitted on ``item_metadata``, to share (it
    depends on the metadata only: fitting it once per refitted family cost 1.9 s of CPU of a
    MovieLens `train`)."""
    model = build(family, params, seed).fit(data, item_metadata)
    if isinstance(model, Content):
        content = model
    elif content is None and any(text.strip(" |") for text in item_metadata.texts()):
        content = Content(seed=seed)
        content.fit(data, item_metadata)
    recent = data.recency(float(model.param("recency"))) if model.by_recency else None
    return Recommender(
        model, data.users, data.items, data.matrix, content, item_metadata, metadata, recent
    )


def save_model(recommender: Recommender, folder: Path) -> None:
    """The ``model_saver`` of :func:`..bundle.save_bundle` for a recommender."""
    recommender.save(folder)


def load_recommender(directory: Path) -> Recommender:
    """The recommender of a bundle folder (``model/`` + ``metadata.json``)."""
    directory = Path(directory)
    folder = directory / MODEL_DIR
    if not (folder / MODEL_FILE).is_file():
        raise FileNotFoundError(
            f"No recommender in {folder} (missing {MODEL_FILE}). Run `make train` to train and "
            "export a champion."
        )
    description = json.loads((folder / MODEL_FILE).read_text())
    with np.load(folder / ARRAYS_FILE, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}

    def part(prefix: str) -> dict[str, np.ndarray]:
        return {n[len(prefix) :]: a for n, a in arrays.items() if n.startswith(prefix)}

    model = from_arrays(
        description["family"], description["params"], description["seed"], part("model.")
    )
    content: Content | None = None
    if isinstance(model, Content):
        content = model
    elif description["content"]:
        content = Content(seed=description["seed"])
        content.load(part("content."))
    return Recommender(
        model=model,
        users=arrays["users"],
        items=arrays["items"],
        history=unpack_csr("history", arrays),
        recent=unpack_csr("recent", arrays) if "recent.shape" in arrays else None,
        content=content,
        item_metadata=ItemMetadata(json.loads((folder / ITEMS_FILE).read_text())),
        metadata=load_metadata(directory),
    )


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _key(value: Any, numeric: bool) -> Any:
    """A request's id as the index keeps it: ``"31"`` finds item 31 of an integer index."""
    if numeric:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | np.integer):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        return None
    return str(value)


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` best columns (best first; ties by column, also at the k-th place)
    and their scores; -1 and -inf pad rows with fewer than ``k`` items (``-inf`` is never
    returned)."""
    n_rows, n_items = scores.shape
    k_eff = min(k, n_items)
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    threshold = np.take_along_axis(scores, part, axis=1).min(axis=1)
    for row in range(n_rows):
        # argpartition picks any of the items tied at the k-th score: take the first ones.
        above = np.flatnonzero(scores[row] > threshold[row])
        tied = np.flatnonzero(scores[row] == threshold[row])[: k_eff - len(above)]
        part[row] = np.concatenate([above, tied])
    picked = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -picked), axis=1)
    codes = np.take_along_axis(part, order, axis=1)
    values = np.take_along_axis(picked, order, axis=1)
    codes = np.where(np.isneginf(values), -1, codes)
    out_codes = np.full((n_rows, k), -1, dtype=np.int64)
    out_values = np.full((n_rows, k), -np.inf, dtype=np.float32)
    out_codes[:, :k_eff], out_values[:, :k_eff] = codes, values
    return out_codes, out_values
