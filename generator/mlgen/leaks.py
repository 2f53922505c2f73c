"""A *leak* is a column whose value would not be known when the service makes a prediction.

A leaking feature makes a model look excellent in testing and fail in use. Three kinds of
evidence say a column leaks:
- the data: a copy of the target, a column that nearly determines it on its own, or a part of
  it (two columns whose sum or difference is the target);
- the brief's words: a sentence saying some values are only known afterwards
  (``stated_leaks``);
- the column's name: a later stage of what the target measures, such as ``arr_delay`` when the
  target is ``dep_delay`` (``named_leaks``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

# One column alone separating two classes this well is suspicious: the strongest single feature
# of the breast cancer data reaches 0.975, the leaked "expenditure" of AER CreditCard 0.990.
LEAK_AUC = 0.985
# An identity that holds on this share of rows is how the data was built, not a coincidence.
IDENTITY_SHARE = 0.99
# The pair search compares every pair of numeric columns: bounded to the columns most
# correlated with the target, and first run on a probe of rows.
MAX_PART_COLUMNS = 60
PROBE_ROWS = 2_000

# Words saying that values come too late for the prediction; their time is in the words.
LATE = re.compile(
    r"\b(?:only|first)\s+(?:becomes?\s+|be\s+)?(?:known|available|observed|measured|recorded)\b"
    r"|\b(?:known|available|measured|recorded|observed|computed|collected|logged|entered|"
    r"filled\s+in|determined|assigned|updated)\s+(?:only\s+)?(?:after|afterwards|later|once)\b"
    r"|\b(?:not|n't)\s+(?:yet|known\s+until|available\s+until)\b|\bunknown\s+until\b"
    r"|\bafterwards\b|\bafter\s+the\s+fact\b|\bin\s+hindsight\b|\bex[-\s]post\b|\bpost-[a-z]+"
    r"|\bleak(?:s|ed|ing|age)?\b",
    re.I,
)
# Words saying that something is not known; they need a time in the same clause (WHEN), since
# "income is not available for some customers" is about missing values, not about leaks.
UNKNOWN = re.compile(
    r"\b(?:not|n't)\s+(?:be\s+|been\s+)?(?:known|available|usable|there)\b"
    r"|\b(?:do|does|did|will|would|can|could)\s*(?:not|n't)\s+(?:yet\s+)?(?:know|have|see|get)\b"
    r"|\bunknown\b|\bunavailable\b|\bnothing\b[^.;]*?\b(?:available|known|usable)\b",
    re.I,
)
WHEN = re.compile(
    r"\b(?:predict\w*|forecast\w*|inference|in\s+advance|beforehand|ahead|yet|"
    r"until|before|by\s+then|at\s+th(?:e|at)\s+(?:time|moment|point)|on\s+the\s+day|"
    r"at\s+(?:booking|check[-\s]?in|sign[-\s]?up|departure|order|application|purchase|"
    r"admission|issue))\b",
    re.I,
)
# Words telling the planner to leave columns out, whatever the reason ("the reading and maths
# scores must not be used", "ignore the district name", "do not use balance").
NOT_TO_USE = re.compile(
    r"\b(?:must|should|may|can|shall|will)\s*(?:not|n't)\s+(?:be\s+)?use[ds]?\b"
    r"|\bcannot\s+(?:be\s+)?use[ds]?\b|\bnot\s+(?:to\s+)?be\s+used\b"
    r"|\b(?:do|does|did)\s*(?:not|n't)\s+use\b|\bnever\s+use\b"
    r"|\b(?:exclude[ds]?|excluding|ignore[ds]?|ignoring|leave\s+out|left\s+out|drop)\b",
    re.I,
)
# ... unless the clause is about rows or values ("ignore rows with a missing arrival delay",
# "drop the outliers of income"), not about the columns it names.
ABOUT_ROWS = re.compile(
    r"\b(?:rows?|records?|missing|empty|blank|nulls?|outliers?|duplicates?|NAs?|NaNs?)\b", re.I
)
# "We know A when we predict, but not B": B is the unknown one.
KNOW = re.compile(r"\b(?:know|known|have|available)\b", re.I)
BUT_NOT = re.compile(r"^\s*(?:we\s+do\s+)?not\b", re.I)
CLAUSE_BREAK = re.compile(r";|,?\s+\b(?:but|whereas|while|although|though)\b", re.I)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[^a-z])|\n\s*\n|\n(?=\s*(?:[-*+]|\d+[.)]|#+)\s)")
ABBREVIATIONS_WITH_DOTS = re.compile(r"\b(?:e\.g|i\.e|etc|vs|approx|incl|cf)\.", re.I)
# Short forms found in column names, read as the words a brief uses.
ABBREVIATIONS = {
    "dep": "departure",
    "arr": "arrival",
    "amt": "amount",
    "qty": "quantity",
    "cnt": "count",
    "num": "number",
    "nbr": "number",
    "pct": "percent",
    "perc": "percent",
    "avg": "average",
    "tot": "total",
    "dur": "duration",
    "dt": "date",
    "ts": "timestamp",
    "temp": "temperature",
    "sched": "scheduled",
    "est": "estimated",
    "hr": "hour",
    "hrs": "hour",
    "mins": "minute",
    "sec": "second",
    "yr": "year",
    "yrs": "year",
    "mo": "month",
    "wk": "week",
    "dist": "distance",
    "cust": "customer",
    "acct": "account",
    "bal": "balance",
    "prev": "previous",
    "pmt": "payment",
    "txn": "transaction",
    "rev": "revenue",
    "deliv": "delivery",
    "diff": "difference",
    "chg": "change",
    "init": "initial",
}
STOP_WORDS = frozenset("a an the of in on at to for by per and or is are was be with from".split())
# Words too common to name a column on their own ("time" in "at prediction time").
GENERIC = frozenset(
    "time date day year month week hour minute second timestamp value number count amount "
    "total rate type id name code level size score index flag status percent average".split()
)
# Name tokens saying a value is recorded at a later stage than the thing it measures.
LATER_STAGE = frozenset("after post final outcome result actual arrival realised realized".split())


def leak_reason(
    x: pd.Series,
    y: pd.Series,
    first_class: np.ndarray | None,
    *,
    column_kind: str,
    n_unique: int,
    target_kind: str,
) -> str | None:
    """Why column ``x`` alone gives ``y`` away (a copy, a near-linear copy, a column that
    nearly determines the class), or None.

    ``column_kind`` and ``n_unique`` are the column's profile (kind and distinct values on the
    sample); ``target_kind`` is binary, multiclass or regression.
    """
    if len(y) < 10 or x.isna().mean() > 0.5:
        return None
    if _share_equal(x, y) >= 0.99:
        return "a copy of the target"
    if target_kind == "regression":
        if column_kind in ("numeric", "boolean"):
            corr = pd.concat([x, y], axis=1).dropna().corr().iloc[0, 1]
            if abs(corr) >= 0.99:
                return f"nearly determines the target (correlation {corr:.3f})"
            # A log or a power of the target is as much a copy as a rescaled one: compare ranks
            # (only for columns already correlated, as ranking every column of a wide file is slow).
            if abs(corr) >= 0.5:
                rho = x.rank().corr(y.rank())
                if abs(rho) >= 0.999:
                    return f"a monotonic transform of the target (rank correlation {rho:.3f})"
        return None
    if n_unique <= max(20, 0.05 * len(y)):
        purity, majority = _purity(x, y)
        if purity >= 0.99 and majority < 0.99:
            return f"nearly determines the target ({purity:.1%} of rows follow its value)"
        return None
    if first_class is not None and column_kind == "numeric":
        auc = _auc(x.to_numpy(dtype=float), first_class)
        if auc is not None and max(auc, 1 - auc) >= LEAK_AUC:
            return (
                f"separates the classes almost perfectly on its own (AUC {max(auc, 1 - auc):.3f})"
            )
    return None


def parts_of_target(numbers: pd.DataFrame, y: pd.Series) -> dict[str, str]:
    """Columns of ``numbers`` that are parts of ``y``: two whose sum or difference equals ``y``
    on at least 99% of rows (a total and its two parts, a balance and its two flows).

    ``numbers`` holds numeric, non-constant columns on the same rows as ``y``. A part that is
    zero on almost every row is left alone: the other column is then a plain copy.
    """
    if numbers.shape[1] < 2 or len(y) < 10:
        return {}
    probe = np.linspace(0, len(y) - 1, min(len(y), PROBE_ROWS)).astype(int)
    if numbers.shape[1] > MAX_PART_COLUMNS:
        strength = numbers.iloc[probe].corrwith(y.iloc[probe]).abs().fillna(0.0)
        numbers = numbers[strength.nlargest(MAX_PART_COLUMNS).index]
    names = list(numbers.columns)
    values = numbers.to_numpy(dtype=float)
    target = y.to_numpy(dtype=float)
    found: dict[str, str] = {}
    for a, b, sign, divisor in _identities(values[probe], target[probe]):
        share = _identity_share(values[:, a], sign * values[:, b], divisor * target)
        rare = [names[i] for i in (a, b) if np.mean(values[:, i] == 0) >= 0.95]
        if share < IDENTITY_SHARE or rare:
            continue
        formula = f'"{names[a]}" {"+" if sign > 0 else "-"} "{names[b]}"'
        formula = f'"{y.name}" = ' + (formula if divisor == 1 else f"({formula}) / {divisor}")
        for i in (a, b):
            found.setdefault(names[i], f"part of the target: {formula} on {share:.0%} of rows")
    return found


def _identities(values: np.ndarray, target: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Column pairs (a, b, sign, divisor) with target = (a + sign * b) / divisor on the probe
    rows, vectorised over b: a sum, a difference, or the mean of two parts (a total score
    averaged from a reading and a maths score)."""
    pairs = []
    for a in range(values.shape[1]):
        # target = a + b  <=>  b = target - a;  target = a - b  <=>  b = a - target;
        # target = (a + b) / 2  <=>  b = 2 target - a.
        for sign, divisor in ((1, 1), (-1, 1), (1, 2)):
            rest = sign * (divisor * target - values[:, a])
            close = _close(values, rest[:, None], np.abs(divisor * target)[:, None])
            shares = close.mean(axis=0)
            shares[a] = 0.0
            if sign > 0:
                shares[: a + 1] = 0.0  # a + b and b + a are one identity
            pairs += [
                (a, int(b), sign, divisor) for b in np.flatnonzero(shares >= IDENTITY_SHARE)
            ]
    return pairs


def _identity_share(a: np.ndarray, b: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(_close(a + b, target, np.abs(a) + np.abs(b))))


def _close(x: np.ndarray, y: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Equal up to float rounding of sums (missing values are never equal)."""
    return np.abs(x - y) <= 1e-9 + 1e-6 * (np.abs(x) + np.abs(y) + scale)


def _share_equal(x: pd.Series, y: pd.Series) -> float:
    """Share of rows where ``x`` equals ``y`` (0 when one is numeric and the other is not)."""
    numeric = pd.api.types.is_numeric_dtype
    if numeric(x) != numeric(y):
        return 0.0
    return float(np.mean(x.to_numpy() == y.to_numpy()))


def _purity(x: pd.Series, y: pd.Series) -> tuple[float, float]:
    """Share of rows whose class is the most common one for their value of ``x``; and the
    share of the most common class overall (what purity is when ``x`` says nothing)."""
    x_codes = pd.factorize(x, use_na_sentinel=True)[0] + 1  # missing values share bucket 0
    y_codes, classes = pd.factorize(y)
    counts = np.bincount(x_codes * len(classes) + y_codes)
    table = np.pad(counts, (0, (x_codes.max() + 1) * len(classes) - len(counts)))
    table = table.reshape(-1, len(classes))
    return table.max(axis=1).sum() / len(y), np.bincount(y_codes).max() / len(y)


def _auc(x: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC of ``x`` as a score for ``positive`` (Mann-Whitney, ties averaged)."""
    present = ~np.isnan(x)
    x, positive = x[present], positive[present]
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return None
    ranks = pd.Series(x).rank().to_numpy()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def stated_leaks(prose: str, columns: Sequence[str], target: str) -> dict[str, str]:
    """Columns that a sentence of the brief says are not known when predicting, each with
    that sentence as its reason.

    A sentence counts when it says values come afterwards ("only known afterwards", "measured
    after the order ships", "post-shipment"), or says they are not known with a time ("we
    don't know the arrival delay when we predict"). A column counts when the same clause names
    it: the name itself, or every word of the name close together ("actual departure and
    arrival times" names ``dep_time`` and ``arr_time``, not ``sched_dep_time``). The target
    is never excluded.

    A sentence that says to leave columns out ("must not be used", "ignore", "exclude", "do not
    use") excludes the columns its clause names too, with that sentence as the reason.
    """
    names = {column: _name_words(column) for column in columns}
    found: dict[str, str] = {}
    for sentence in _sentences(prose):
        quote = sentence if len(sentence) <= 200 else sentence[:197] + "..."
        for clause in _unknown_clauses(sentence):
            for column in _named_in(clause, names, target):
                found.setdefault(column, f'not known at prediction time, the brief says: "{quote}"')
        for clause in CLAUSE_BREAK.split(sentence):
            if NOT_TO_USE.search(clause) and not ABOUT_ROWS.search(clause):
                for column in _named_in(clause, names, target):
                    found.setdefault(column, f'left out, the brief says: "{quote}"')
    return found


def named_leaks(columns: Sequence[str], target: str) -> dict[str, str]:
    """Columns whose name marks a later stage of what the target measures, with the reason.

    Both parts must be in the name: a later-stage word the target's name lacks ("arr" for
    arrival, "actual", "final", "post", "after", "outcome", "result"), and a word it shares
    with the target that is not generic ("delay" in ``arr_delay`` for ``dep_delay``; "time"
    alone is not enough).
    """
    later = {_normal(word) for word in LATER_STAGE}
    target_words = set(_name_words(target))
    found = {}
    for column in columns:
        words = _name_words(column)
        stages = [w for w in words if w in later and w not in target_words]
        shared = [w for w in words if w in target_words and w not in later and w not in GENERIC]
        if column != target and stages and shared:
            found[column] = (
                f'its name marks a later stage ("{stages[0]}") of what the target measures '
                f'("{shared[0]}"): recorded after the outcome'
            )
    return found


def _sentences(prose: str) -> list[str]:
    """The prose's sentences and list items, each on one line, as written."""
    # The dot of "e.g." ends no sentence: hidden while splitting.
    text = ABBREVIATIONS_WITH_DOTS.sub(lambda m: m.group(0)[:-1] + "\0", prose)
    parts = (" ".join(part.split()).replace("\0", ".") for part in SENTENCE_END.split(text))
    return [re.sub(r"^(?:[-*+]|\d+[.)]|#+)\s+", "", part) for part in parts if part]


def _unknown_clauses(sentence: str) -> list[str]:
    """The clauses of ``sentence`` that say their subject is not known when predicting."""
    clauses = [c for c in CLAUSE_BREAK.split(sentence.replace("\u2019", "'")) if c.strip()]
    chosen = []
    for index, clause in enumerate(clauses):
        if (
            LATE.search(clause)
            or (UNKNOWN.search(clause) and WHEN.search(clause))
            or (index and BUT_NOT.match(clause) and KNOW.search(clauses[index - 1]))
        ):
            chosen.append(clause)
    return chosen


def _named_in(clause: str, names: dict[str, list[str]], target: str) -> list[str]:
    """Columns ``clause`` names, the target left out.

    Beside a parenthesised list, a single word outside it does not count ("after the flight
    (air time, arrival time)" is not about ``flight``); a column named only as part of a longer
    one is dropped ("arrival time" is not ``time``).
    """
    listed = " ".join(re.findall(r"\(([^()]*)\)", clause))
    outside = re.sub(r"\([^()]*\)", " ", clause)
    named = _names(listed, names) | {
        column for column in _names(outside, names) if not listed or len(names[column]) > 1
    }
    return sorted(
        column
        for column in named
        if column != target and not any(set(names[column]) < set(names[o]) for o in named)
    )


def _names(text: str, names: dict[str, list[str]]) -> set[str]:
    words = _words(text)
    mentioned = {column for column in names if _mentioned(column, text)}
    close = {column for column, parts in names.items() if _close_together(parts, words)}
    named = mentioned | close
    return mentioned | {c for c in close if not _qualifies(names[c], named - {c}, names, words)}


def _qualifies(
    parts: list[str], others: set[str], names: dict[str, list[str]], words: list[str]
) -> bool:
    """A one-word name that only ever follows "<another named column> of": "share of income"
    names ``share``, not ``income``."""
    if len(parts) != 1:
        return False
    other_words = {word for other in others for word in names[other]}
    bare = [word for word in words if word not in ("the", "a", "an")]
    places = [i for i, word in enumerate(bare) if word == parts[0]]
    return all(i >= 2 and bare[i - 1] == "of" and bare[i - 2] in other_words for i in places)


def _mentioned(column: str, text: str) -> bool:
    """``column`` written as itself: quoted, or a name no prose word looks like (arr_delay)."""
    name = re.escape(column)
    if re.search(rf"[`'\"]{name}[`'\"]", text, re.I):
        return True
    identifier = re.search(r"[^A-Za-z]|[a-z][A-Z]", column)
    return bool(identifier and re.search(rf"(?<![\w.]){name}(?!\w)", text, re.I))


def _close_together(parts: list[str], words: list[str]) -> bool:
    """All of ``parts`` within a window of len(parts) + 2 words (a name made only of generic
    words, such as ``time_hour``, never matches by its words alone)."""
    if all(part in GENERIC for part in parts):
        return False
    width, needed = len(parts) + 2, set(parts)
    return any(needed <= set(words[start : start + width]) for start in range(len(words)))


def _name_words(name: str) -> list[str]:
    """The words of a column name: split at _ . - spaces, camelCase and digits, normalised."""
    split = _split(name)
    # "no" is a number in order_no and no_of_items, but not in no_show.
    words = [
        "number" if w in ("no", "nr") and (i + 1 == len(split) or split[i + 1] == "of") else w
        for i, w in enumerate(split)
    ]
    return list(dict.fromkeys(_normal(w) for w in words if w not in STOP_WORDS))


def _words(text: str) -> list[str]:
    return [_normal(word) for word in _split(text)]


def _split(text: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)", " ", text)
    spaced = re.sub(r"(?<=\d)(?=[A-Za-z])", " ", spaced)
    return [w.lower() for w in re.findall(r"[A-Za-z]+|\d+", spaced)]


def _normal(word: str) -> str:
    """One spelling per word: abbreviations expanded, plurals and -ing/-ed/-ly endings cut."""
    word = ABBREVIATIONS.get(word, word)
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for ending in ("ing", "ed", "ly"):
        if len(word) > len(ending) + 3 and word.endswith(ending):
            word = word[: -len(ending)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]
            break
    return word
