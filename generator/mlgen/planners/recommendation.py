"""The heuristic planner's decisions for a recommendation brief: which columns are the users,
the items, the time, the weight and the item metadata, read from the profile by name and by
shape.

Shapes: users and items are ids repeated over many rows (many interactions per user and per
item); item metadata is constant within each item (a movie's title and genres) and not an
attribute of the users; the time is a date column or an integer timestamp that is not item
metadata (a movie's release year is); the weight is a number named like a rating, a count or a
duration. Whatever the brief's front matter states wins.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any

import pandas as pd

from mlgen.brief import Brief
from mlgen.errors import PlanError
from mlgen.plan import Plan
from mlgen.profile import ID_NAME, ColumnProfile, Profile

USER_NAME = re.compile(
    r"user|customer|client|member|account|visitor|viewer|listener|reader|player|patient|"
    r"subscriber|buyer|shopper|person|session|basket|cart|order|sheet|playlist|household",
    re.I,
)
ITEM_NAME = re.compile(
    r"item|product|sku|article|movie|film|song|track|album|artist|book|course|game|recipe|"
    r"equipment|gear|device|part|video|episode|restaurant|hotel|venue|listing|offer|app|"
    r"asin|isbn|poi",
    re.I,
)
TIME_NAME = re.compile(r"time|date|^ts$|timestamp|created|when|day|^at$|_at$", re.I)
DATE_PART = re.compile(
    r"(?:year|day|month|week|hour|minute|second|quarter|weekday|dow|day_?of_?(?:week|month|year))s?",
    re.I,
)
WEIGHT_NAME = re.compile(
    r"rating|score|stars?$|count|qty|quantity|plays?$|play_?count|clicks?|views?|duration|"
    r"minutes|seconds|listens?|times|freq|frequency|amount|weight|units",
    re.I,
)
RATING_NAME = re.compile(r"rating|stars?$|score", re.I)
TOP_K = re.compile(
    r"\btop[- ]?(\d{1,3})\b|\b(\d{1,3})\s+(?:recommendations|suggestions|items|products)\b",
    re.I,
)
TOP_NOUN = re.compile(r"\btop[- ]?\d{1,3}\s+(?:new\s+|other\s+)?([a-z]\w+)", re.I)
NEXT_ITEM = re.compile(
    r"\bnext\s+(?:item|product|song|track|movie|film|purchase|book|video|episode|order)s?\b", re.I
)
EACH = re.compile(r"\b(?:each|every|per)\s+([a-z][a-z ]{0,40})", re.I)
POSSESSIVE_AFTER = re.compile(r"['\u2019]s?\b")
# Items share this much of their rows' metadata value at least (a few typos are tolerated).
CONSTANT_SHARE = 0.98
MIN_IDS = 5
LARGE_DATA = 1_000_000


def plan_recommendation(brief: Brief, profile: Profile) -> Plan:
    """A recommendation plan for ``brief`` on ``profile``; :class:`PlanError` naming what to
    state in the brief when the data has no user and item columns."""
    draft = _Draft(brief, profile)
    draft.decide()
    plan = Plan.build(draft.values | {"rationale": draft.why})
    plan.check_columns(profile.column_names)
    return plan


class _Draft:
    def __init__(self, brief: Brief, profile: Profile) -> None:
        self.brief, self.profile = brief, profile
        self.front = brief.front
        self.values: dict[str, Any] = {"kind": "recommendation", "data_path": str(profile.source)}
        if brief.kind:
            kind = "stated in the brief"
        elif brief.recommends:
            kind = (f'the brief asks for recommendations ("{brief.recommends}"), not a column to '
                    "predict")
        else:
            kind = "the brief sets recommendation settings and no target"
        self.why: dict[str, str] = {
            "kind": kind,
            "data_path": "the brief's data file, read in place (absolute path)",
        }

    def set(self, field: str, value: Any, why: str) -> None:
        self.values[field] = value
        self.why[field] = why

    def decide(self) -> None:
        self._users_and_items()
        self._time()
        self._metadata()
        self._weight()
        self._k_and_split()
        self._search()
        for field, value in self.brief.plan_overrides.items():
            self.set(field, value, "stated in the brief")

    # -- columns ---------------------------------------------------------------------------

    def _stated(self, field: str) -> str | None:
        value = self.front.get(field)
        return str(value) if value not in (None, "") else None

    def _ids(self) -> list[ColumnProfile]:
        """Columns that can hold user or item ids: repeated labels or integers, not dates,
        free text or measurements."""
        rows = self.profile.n_sampled
        return [
            c
            for c in self.profile.columns
            if (c.kind == "categorical" or (c.kind == "numeric" and c.integer))
            and MIN_IDS <= c.n_unique <= 0.7 * rows
            and not c.mostly_missing
        ]

    def _users_and_items(self) -> None:
        ids = self._ids()
        user = (self._stated("user_column") or _each_named(self.brief.prose, ids)
                or _best(ids, USER_NAME))
        others = [c for c in ids if c.name != user]
        item = self._stated("item_column") or _best(others, ITEM_NAME) or _ranked_in(
            self.brief.prose, others
        )
        if user is None or item is None:
            # No names to go by: the first two id-like columns, in file order (userId, movieId).
            rest = [c.name for c in ids if c.name not in (user, item)]
            named = [n for n in rest if ID_NAME.search(n)] or rest
            user = user or (named.pop(0) if named else None)
            named = [n for n in named if n != user]
            item = item or (named[0] if named else None)
        if user is None or item is None:
            shown = ", ".join(self.profile.column_names[:30])
            # Say which one was found ("id" for the orders of pizzaplace), so the user names
            # only the other.
            found = (f' The user column would be "{user}" (an id repeated over rows); no other '
                     "column looks like the items." if user else "")
            raise PlanError(
                "The brief asks for recommendations, but no two columns of the data look like "
                f"user and item ids (repeated over many rows).{found} Name them in the front "
                f"matter:\n  user_column: <one of: {shown}>\n  item_column: <one of: {shown}>"
            )
        frame = self.profile.frame
        per_user = len(frame) / max(1, frame[user].nunique())
        per_item = len(frame) / max(1, frame[item].nunique())
        self.set(
            "user_column",
            user,
            "stated in the brief"
            if self._stated("user_column")
            else f"an id repeated over many rows ({per_user:.1f} interactions per value): who "
            "interacted",
        )
        self.set(
            "item_column",
            item,
            "stated in the brief"
            if self._stated("item_column")
            else f"an id repeated over many rows ({per_item:.1f} interactions per value): what "
            "was used",
        )

    @cached_property
    def _item_attributes(self) -> list[str]:
        """Columns whose value is the same on every row of an item (and not on every row of a
        user): what the data says about the items."""
        frame, item = self.profile.frame, self.values["item_column"]
        user = self.values["user_column"]
        roles = {item, user}
        found = []
        for col in self.profile.columns:
            if col.name in roles or col.constant or col.mostly_missing:
                continue
            if _constant_within(frame, item, col.name) and not _constant_within(
                frame, user, col.name
            ):
                found.append(col.name)
        return found

    def _time(self) -> None:
        if "time_column" in self.front:
            self.why["time_column"] = "stated in the brief"
            return
        attributes = set(self._item_attributes)
        roles = {self.values["user_column"], self.values["item_column"]}
        usable = [
            c
            for c in self.profile.columns
            if c.name not in roles | attributes and not c.constant and not c.mostly_missing
        ]
        dates = [c for c in usable if c.kind == "datetime"]
        # A day of the month or a month of the year beside other parts of a date orders
        # nothing: the 3rd comes before the 20th in every month (ratdat's captures). A day
        # alone may count days.
        parts = [c.name for c in self.profile.columns if DATE_PART.fullmatch(c.name)]
        stamps = [
            c for c in usable if c.kind == "numeric" and c.integer and TIME_NAME.search(c.name)
            and not (len(parts) > 1 and c.name in parts)
        ]
        chosen = (dates or stamps or [None])[0]
        if chosen is None:
            self.set(
                "time_column",
                "",
                "no date or timestamp column: the split is random, and recent popularity is "
                "left out",
            )
            return
        what = "dates" if chosen.kind == "datetime" else "an integer timestamp"
        self.set(
            "time_column",
            chosen.name,
            f"{what} of each interaction: train on the past, test on the future",
        )

    def _metadata(self) -> None:
        if "item_columns" in self.front:
            return
        roles = {self.values["time_column"]}
        columns = [
            name
            for name in self._item_attributes
            if name not in roles and self.profile.column(name).kind in ("categorical", "text")
        ]
        if columns:
            self.set(
                "item_columns",
                columns,
                "the same value on every row of an item: its metadata, for filters and for "
                "content similarity of items no one has used yet",
            )
        else:
            self.set("item_columns", [], "no text column describes the items")

    def _weight(self) -> None:
        if "weight_column" in self.front:
            self.why["weight_column"] = "stated in the brief"
            return
        taken = {
            self.values["user_column"],
            self.values["item_column"],
            self.values["time_column"],
            *self.values.get("item_columns", []),
        }
        numbers = [
            c
            for c in self.profile.columns
            if c.kind == "numeric"
            and c.name not in taken
            and not c.constant
            and WEIGHT_NAME.search(c.name)
            and not TIME_NAME.search(c.name)
        ]
        if not numbers:
            self.set("weight_column", "", "no rating, count or duration column: every row counts 1")
            self.set("min_weight", None, "no weights")
            return
        chosen = numbers[0]
        values = pd.to_numeric(self.profile.frame[chosen.name], errors="coerce").dropna()
        kind = "a rating" if RATING_NAME.search(chosen.name) else "a count or amount"
        self.set(
            "weight_column",
            chosen.name,
            f"{kind} ({values.min():g} to {values.max():g}): stronger interactions weigh more",
        )
        self.set(
            "min_weight",
            None,
            "every interaction counts as a positive, weighted by its value (set min_weight to "
            "drop weak ones)",
        )

    # -- what to train ---------------------------------------------------------------------

    def _k_and_split(self) -> None:
        match = TOP_K.search(self.brief.prose)
        k = next((int(g) for g in match.groups() if g), 10) if match else 10
        if 1 <= k <= 100 and match:
            self.set("top_k", k, f'the brief asks for "{" ".join(match.group(0).split())}"')
        else:
            self.set("top_k", 10, "ten items a request by default; a request may ask for up to 100")
        rows = self.profile.n_rows
        time, user = self.values["time_column"], self.values["user_column"]
        if not time:
            self.set("recommendation_split", "random", "no time column: a seeded random split")
        elif _constant_within(self.profile.frame, user, time):
            self.set(
                "recommendation_split",
                "user_last",
                f'each "{user}" is made at one time (a basket): a time cut would test only on '
                "baskets never seen, so the test holds out some items of every basket, as when "
                "the service completes one",
            )
        elif (spread := self._users_across_the_cut()) is not None:
            spanning, total = spread
            self.set(
                "recommendation_split",
                "user_last",
                f"a global time cut at the latest 20% would leave {spanning} of {total:,} users "
                "with both a history to learn from and a future to test: each user's latest "
                "interactions are held out instead",
            )
        elif NEXT_ITEM.search(self.brief.prose):
            self.set(
                "recommendation_split",
                "user_last",
                "the brief asks for the next item: each user's latest interactions are held out",
            )
        else:
            self.set(
                "recommendation_split",
                "time",
                "a global time cut: the test is the future, as when the service is used",
            )
        held = {"time": "the latest 20% of the interactions",
                "user_last": "the last 20% of each user's interactions",
                "random": "a seeded 20% of the interactions"}[self.values["recommendation_split"]]
        self.set("test_size", 0.2, f"{held} for the test")
        self.set(
            "validation_size",
            0.2,
            "as much again to select and tune the model: chosen on the horizon it is tested on",
        )
        self.set("primary_metric", "ndcg", "NDCG@k rewards the relevant items ranked first")
        self.set("seed", 42, "one seed for splits, models and search")
        window = 1000 if rows >= 10_000 else max(100, (rows // 10) // 50 * 50)
        self.set("drift_window", window, "recent requests compared with the training data")
        self.set(
            "drift_categorical_threshold",
            0.05,
            "a floor above negligible shifts of the requested items' popularity",
        )

    def _users_across_the_cut(self) -> tuple[int, int] | None:
        """(users on both sides, users) when too few users have interactions before and after
        the time cut of a 20% test (fewer than 100 and a fifth of them), else None."""
        frame = self.profile.frame
        time = frame[self.values["time_column"]]
        if self.profile.column(self.values["time_column"]).kind == "datetime":
            time = (time - time.min()).dt.total_seconds()
        time = pd.to_numeric(time, errors="coerce")
        cut = time.quantile(0.8)
        spans = time.groupby(frame[self.values["user_column"]]).agg(["min", "max"])
        spanning = int(((spans["min"] < cut) & (spans["max"] >= cut)).sum())
        if spanning >= min(100, 0.2 * len(spans)):
            return None
        return spanning, len(spans)

    def _search(self) -> None:
        families = ["popularity", "item_knn", "ease", "als", "bpr"]
        if self.values["time_column"]:
            families.insert(1, "recent_popularity")
        if self.values.get("item_columns"):
            families.append("content")
        left = [f for f in ("recent_popularity", "content") if f not in families]
        self.set(
            "recommenders",
            families,
            "every family the data allows"
            + (f" ({', '.join(left)} need{'s' if len(left) == 1 else ''} "
               f"{' and '.join(_NEEDS[f] for f in left)})" if left else ""),
        )
        rows = self.profile.n_rows
        budget = 60 if rows < LARGE_DATA else 300
        self.set("tuning_trials", 8, "8 seeded trials per tunable family")
        self.set(
            "time_budget_seconds",
            budget,
            f"{rows:,} interactions: selection and tuning within {budget} s",
        )


_NEEDS = {"recent_popularity": "a time column", "content": "item metadata"}


def _ranked_in(prose: str, columns: list[ColumnProfile]) -> str | None:
    """The column the brief ranks ("the top 5 destinations" -> dest, "top 10 stores" ->
    store_id): the word after "top N" begins with its name, or its name with the word."""
    for match in TOP_NOUN.finditer(prose):
        word = match.group(1).lower()
        stem = word[:-1] if word.endswith("s") else word
        for column in columns:
            name = re.sub(r"[_\s-]*id$", "", column.name.lower()) or column.name.lower()
            prefix = word.startswith(name) or (len(stem) >= 3 and name.startswith(stem))
            if len(name) >= 3 and prefix:
                return column.name
    return None


def _each_named(prose: str, columns: list[ColumnProfile]) -> str | None:
    """The column the prose recommends to ("for each zip code", "to every store"): one to
    three words after each, every or per that spell an id column's name (zip_code)."""
    keys = {re.sub(r"[\W_]+", "", c.name.lower()): c.name for c in columns}
    for match in EACH.finditer(prose):
        words = match.group(1).lower().split()
        for size in range(min(3, len(words)), 0, -1):
            found = keys.get("".join(words[:size]))
            # An owner is the page, not the user: "similar lecturers on each lecturer's page".
            end = prose.find(words[size - 1], match.start(1)) + len(words[size - 1])
            if found is not None and not POSSESSIVE_AFTER.match(prose, end):
                return found
    return None


def _best(columns: list[ColumnProfile], pattern: re.Pattern[str]) -> str | None:
    """The column whose name matches ``pattern``, ids (``..._id``) first, then by cardinality."""
    named = [c for c in columns if pattern.search(c.name)]
    if not named:
        return None
    named.sort(key=lambda c: (not ID_NAME.search(c.name), -c.n_unique))
    return named[0].name


def _constant_within(frame: pd.DataFrame, key: str, column: str) -> bool:
    """Whether ``column`` holds one value per value of ``key`` (on nearly every key)."""
    pairs = frame[[key, column]].dropna()
    if pairs.empty or pairs[key].nunique() == len(pairs):
        return False
    distinct = pairs.groupby(key, sort=False)[column].nunique()
    return bool((distinct <= 1).mean() >= CONSTANT_SHARE)

