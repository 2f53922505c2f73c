"""A *brief* is a short Markdown description of a prediction problem, with optional front matter.

The YAML front matter (between ``---`` lines) states facts outright (``data``, ``target``,
``task``, ``metric``, ``id``, ``time``, ``group``, ``latency_ms``, ``model``, ``exclude`` or any
Plan field); the prose below it is read for hints when a fact is not stated: a data file name,
"predict <column>", and words such as churn, price, forecast or imbalanced.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from mlgen.errors import BriefError, TargetNotFoundError
from mlgen.plan import PLAN_FIELDS

# Short front-matter keys -> Plan fields (or project settings the CLI uses).
ALIASES = {
    "data": "data",
    "data_path": "data",
    "target": "target",
    "metric": "primary_metric",
    "id": "id_column",
    "time": "time_column",
    "group": "group_column",
    "latency_ms": "latency_budget_ms",
    "model": "model_family",
    "family": "model_family",
    "exclude": "exclude_columns",
    "name": "project_name",
    "trials": "tuning_trials",
    "budget": "tuning_time_budget_seconds",
    "time_budget_seconds": "tuning_time_budget_seconds",
    "user": "user_column",
    "item": "item_column",
    "weight": "weight_column",
    "k": "top_k",
    "candidates": "recommenders",
}
PROJECT_KEYS = frozenset({"project_name", "package_name", "description", "author"})
# The audio and text kinds, by their names and their tasks' (``task: audio_classification``).
LABELLED_KINDS = {"audio": "audio", "audio_classification": "audio", "text": "text",
                  "text_classification": "text"}
TASK_WORDS = {
    "binary": "binary_classification",
    "multiclass": "multiclass_classification",
    "classification": "classification",
    "regression": "regression",
}
TIME_WORDS = (
    "forecast",
    "over time",
    "time series",
    "time-series",
    "future",
    "next month",
    "next week",
    "next year",
    "temporal",
    "trend",
)
IMBALANCE_WORDS = ("imbalanced", "imbalance", "rare", "fraud", "anomal")
# Phrases of a recommendation brief ("suggest related equipment", "people who used X also used
# Y", "the next item", "top 10 for each user", "for each user the top 5 ... it has not tried
# yet"): the recommendation kind, no column to predict.
RECOMMEND = re.compile(
    r"\brecommend\w*|\bsuggest(?:s|ed|ing)?\s+(?:\w+\s+){0,3}?(?:related|similar|other|"
    r"complementary)\b|\balso\s+(?:used|bought|liked|watched|listened|played|read|viewed|"
    r"purchased|added|chose|ordered|booked|rented|downloaded)\b|\bnext\s+(?:item|product|song|track|movie|film|purchase|book)s?\b"
    r"|\btop[- ]?\d+\s+(?:\w+\s+){0,3}?(?:for|per)\s+(?:each|every)\b"
    r"|\b(?:related|similar)\s+items\b"
    # "suggest for each plane the top 5 ...", "the top 5 destinations it has not flown to yet"
    r"|\b(?:suggest|recommend)\w*\s+(?:to|for)\s+(?:each|every)\s+\w+\s+(?:the\s+)?(?:top[- ]?)?"
    r"\d+\b|\btop[- ]?\d+\s+\w+\s+(?:it|they|he|she|the\s+\w+)\s+(?:has|have|had)\s+"
    r"(?:not|never)\b"
    # "which lecturers should we suggest to each student?": items offered to each person
    r"|\bsuggest\w*\s+(?:\w+\s+){0,3}?to\s+(?:each|every)\s+\w+",
    re.IGNORECASE,
)
REGRESSION_WORDS = ("price", "how much", "how many", "amount", "revenue", "cost", "estimate the")
DATA_FILE = re.compile(r"[\w./\\~-]+\.(?:csv|parquet|pq)\b", re.IGNORECASE)
# A folder the prose names with its trailing slash ("clips/"): a folder of audio clips.
DATA_FOLDER = re.compile(r"(?<![\w/.~-])([\w.~-][\w./~-]*/)(?=[\s,;:)]|\.?$|\.\s)", re.M)
PREDICT = re.compile(
    r"\b(?:predict|predicts|predicting|forecast|forecasting|estimate|estimating|classify|"
    r"flag|flags|flagging|detect|detects|detecting|identify|identifying|spot|spotting|"
    # "a model of survived", "a classifier for deny"
    r"(?:model|classifier|predictor|regressor)\s+(?:of|for)"
    # "Model participation in the labour force", "we want to model churn": the verb, at a
    # sentence's start or after "to" ("the model uses age" is the noun, and names no target)
    r"|(?:(?<=^)|(?<=\n)|(?<=[.!?]\s)|(?<=\bto\s))model)\s+"
    r"(?:the\s+|whether\s+|if\s+|a\s+|an\s+|which\s+)?[`\"']?"
    r"((?:[^\n.,;:()`\"'\u2019]|['\u2019]s\b){1,80})",
    re.IGNORECASE,
)
# A parenthesised aside, "(Purchase)" or "(Salary, thousands of dollars)", and a sentence's end.
PARENTHESES = re.compile(r"\(([^()\n]{1,80})\)")
SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n\s*\n")
POSSESSIVE = re.compile(r"['\u2019]s$", re.IGNORECASE)
INPUTS_CUE = re.compile(r"\b(?:from|using|given|based\s+on|out\s+of)\b", re.IGNORECASE)
QUESTION = re.compile(r"\b(?:whether|which|what|who|how|if)\b", re.IGNORECASE)
# "(affairs > 0)", "delay of more than 15 minutes", "at least one visit": a yes/no question
# asked of a number (data.positive_when). Words for small numbers, and the comparisons.
NUMBER_WORDS = {
    "zero": 0, "once": 1, "twice": 2, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}
NUMBER = r"(-?\d+(?:\.\d+)?|" + "|".join(NUMBER_WORDS) + r")\b"
SYMBOLS = {">=": ">=", "<=": "<=", "==": "==", "!=": "!=", "\u2265": ">=", "\u2264": "<=",
           ">": ">", "<": "<", "=": "=="}
WORDED = {
    "greater than": ">", "more than": ">", "higher than": ">", "larger than": ">",
    "above": ">", "over": ">", "exceeds": ">", "exceeding": ">", "exceed": ">",
    "at least": ">=", "no less than": ">=", "no fewer than": ">=",
    "less than": "<", "fewer than": "<", "lower than": "<", "smaller than": "<", "below": "<",
    "under": "<", "at most": "<=", "no more than": "<=", "equal to": "==", "equals": "==",
}
# "20 or more days", "2500 grams or less": the comparison after the number.
TRAILING = {
    "or more": ">=", "or higher": ">=", "or above": ">=", "or greater": ">=", "or over": ">=",
    "and above": ">=", "and over": ">=", "or less": "<=", "or fewer": "<=", "or below": "<=",
    "or lower": "<=", "or under": "<=", "and below": "<=", "and under": "<=",
}
NONZERO = re.compile(r"\b(?:non-?zero|positive)\b", re.IGNORECASE)
# Words that end a noun phrase: what follows them names something else.
LINKING_WORDS = frozenset({
    "of", "for", "in", "on", "at", "by", "from", "with", "per", "to", "using", "given", "who",
    "that", "which", "when", "where", "whether", "if", "over", "during", "after", "before",
    "next", "each", "every", "and", "or", "is", "are", "was", "were", "will",
})
# A question the brief asks ("Which applicants are likely to be denied?"): it may name the
# target without a verb of predicting.
# Asked outright or inside a sentence ("we need to know which applicants are denied").
QUESTION_SENTENCE = re.compile(
    r"(?:^|(?<=[.!?:\n]))\s*([^.!?\n]{3,200}\?)|\b((?:which|whether|who)\s[^.!?\n]{3,200})", re.I
)
# Words that name no value of a column ("written on an Android": Android may).
PLAIN_WORDS = frozenset({
    "the", "a", "an", "of", "for", "in", "on", "at", "by", "from", "with", "to", "which", "who",
    "what", "whether", "if", "was", "were", "is", "are", "be", "been", "will", "and", "or", "not",
    "written", "sent", "made", "their", "its", "his", "her", "they", "it", "likely", "each",
})
TARGET_IS = re.compile(r"\btarget(?:\s+column)?\s*(?:is|=|:)\s*[`\"']?([\w .-]{1,64})", re.I)
FIX_EXAMPLE = "---\ndata: data.csv\ntarget: churned\n---\nPredict which customers churn."


@dataclass(frozen=True)
class Brief:
    """A parsed brief: front matter (normalised keys) and prose."""

    text: str
    front: dict[str, Any] = field(default_factory=dict)
    prose: str = ""
    folder: Path = field(default_factory=Path.cwd)
    path: Path | None = None

    @classmethod
    def load(cls, path: Path) -> Brief:
        """Read and parse a brief file; relative data paths resolve against its folder."""
        path = Path(path)
        if not path.is_file():
            raise BriefError(
                f"Brief {path} does not exist. Write a Markdown file such as:\n{FIX_EXAMPLE}"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BriefError(f"Cannot read brief {path} as UTF-8 text: {exc}") from exc
        return cls.parse(text, folder=path.resolve().parent, path=path.resolve())

    @classmethod
    def parse(cls, text: str, folder: Path | None = None, path: Path | None = None) -> Brief:
        where = path or "the brief"
        if not text.strip():
            raise BriefError(
                f"{where} is empty. Start it with front matter such as:\n{FIX_EXAMPLE}"
            )
        front_text, prose = _split_front_matter(text, where)
        try:
            raw = yaml.safe_load(front_text) if front_text else {}
        except yaml.YAMLError as exc:
            raise BriefError(f"The front matter of {where} is not valid YAML: {exc}") from exc
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise BriefError(
                f"The front matter of {where} must be 'key: value' lines, got {type(raw).__name__}"
            )
        return cls(
            text=text,
            front=_normalise(raw, where),
            prose=prose,
            folder=folder or Path.cwd(),
            path=path,
        )

    @cached_property
    def lowered(self) -> str:
        return self.prose.lower()

    def says(self, words: Sequence[str]) -> str | None:
        """The first of ``words`` the prose contains (case-insensitive), if any."""
        return next((word for word in words if word in self.lowered), None)

    @cached_property
    def recommends(self) -> str | None:
        """The phrase asking for recommendations ("suggest related", "top 10 for each user",
        ...), if the prose has one."""
        match = RECOMMEND.search(self.prose)
        return " ".join(match.group(0).split()) if match else None

    @property
    def kind(self) -> str | None:
        """The kind the front matter states (``kind``, or ``task: recommendation``), if any."""
        return self.front.get("kind")

    @property
    def plan_overrides(self) -> dict[str, Any]:
        """Front-matter values for Plan fields (everything except data, target and project)."""
        skip = {"data", "target", "task", "kind"} | PROJECT_KEYS
        return {key: value for key, value in self.front.items() if key not in skip}

    @property
    def project(self) -> dict[str, str]:
        """project_name / package_name / description / author given in the front matter."""
        return {key: str(self.front[key]) for key in PROJECT_KEYS if key in self.front}

    @property
    def task(self) -> str | None:
        """binary_classification, multiclass_classification, regression, classification or None."""
        return self.front.get("task")

    @cached_property
    def title(self) -> str:
        heading = re.search(r"^#\s+(.+)$", self.prose, re.MULTILINE)
        return heading.group(1).strip() if heading else ""

    @cached_property
    def summary(self) -> str:
        """The first prose paragraph that is not a heading, on one line."""
        text = "\n".join(line for line in self.prose.splitlines() if not line.startswith("#"))
        for block in re.split(r"\n\s*\n", text):
            if block.strip():
                return " ".join(block.split())
        return ""

    def data_path(self, override: Path | None = None) -> Path:
        """The data file: ``override``, else front matter ``data``, else a file named in prose."""
        if override is not None:
            candidate = Path(override).expanduser()
        elif "data" in self.front:
            candidate = Path(str(self.front["data"])).expanduser()
        else:
            mention = DATA_FILE.search(self.prose)
            folder = next((found for found in DATA_FOLDER.findall(self.prose)
                           if (self.folder / Path(found).expanduser()).is_dir()), None)
            if not mention and folder:
                # A folder of clips the prose names ("the recordings are in clips/").
                candidate = Path(folder).expanduser()
                return candidate if candidate.is_absolute() else (self.folder / candidate)
            if not mention:
                raise BriefError(
                    "The brief does not name a data file. Add this front-matter line (or pass "
                    "--data PATH):\n  data: path/to/your_data.csv\n(a CSV or Parquet file; for "
                    "audio, a folder of clips, which the prose may also name with its slash: "
                    "clips/)"
                )
            candidate = Path(mention.group(0)).expanduser()
        return candidate if candidate.is_absolute() else (self.folder / candidate)

    def asked_comparison(self, target: str) -> str | None:
        """The comparison the prose asks of ``target``, as ``data.positive_when`` writes it
        (``"> 0"``), or None: "(affairs > 0)", "affairs of more than 2", "at least one visit"
        (the target's words, then up to three words, then the comparison), "a non-zero
        count of affairs", "any affairs"."""
        name = r"[\s_-]*".join(map(re.escape, re.split(r"[\s_-]+", target.strip())))
        # The singular of a plural name: "an affair" for affairs.
        name = rf"(?:{name}|{name[:-1]})" if target.lower().endswith("s") else name
        symbol = "|".join(map(re.escape, sorted(SYMBOLS, key=len, reverse=True)))
        worded = "|".join(sorted(WORDED, key=len, reverse=True)).replace(" ", r"\s+")
        found = re.search(rf"\b{name}\s*({symbol})\s*{NUMBER}", self.prose, re.IGNORECASE)
        if found:
            return f"{SYMBOLS[found.group(1)]} {_number(found.group(2))}"
        around = rf"\b{name}\b(?:\W+\w+){{0,3}}?\W+({worded})\s+{NUMBER}"
        before = rf"\b({worded})\s+{NUMBER}(?:\s+\w+){{0,4}}?\s+\(?{name}\b"
        for pattern, op_group, number_group in ((around, 1, 2), (before, 1, 2)):
            found = re.search(pattern, self.prose, re.IGNORECASE)
            if found:
                op = WORDED[" ".join(found.group(op_group).lower().split())]
                return f"{op} {_number(found.group(number_group))}"
        trailing = "|".join(TRAILING).replace(" ", r"\s+")
        after = rf"\b{name}\b(?:\W+\w+){{0,3}}?\W+{NUMBER}(?:\s+\w+)?\s+({trailing})\b"
        first = rf"\b{NUMBER}(?:\s+\w+)?\s+({trailing})\b(?:\s+\w+){{0,4}}?\s+\(?{name}\b"
        middle = rf"\b{NUMBER}\s+\(?{name}\)?\s+({trailing})\b"
        for pattern in (after, first, middle):
            found = re.search(pattern, self.prose, re.IGNORECASE)
            if found:
                op = TRAILING[" ".join(found.group(2).lower().split())]
                return f"{op} {_number(found.group(1))}"
        near = re.search(rf"(?:{NONZERO.pattern}|\bany)(?:\s+\w+){{0,3}}?\s+{name}\b|\b{name}\b"
                         rf"(?:\s+\w+){{0,2}}?\s+{NONZERO.pattern}", self.prose, re.IGNORECASE)
        return "> 0" if near else None

    def find_target(
        self, columns: Sequence[str], values: Mapping[str, Sequence[str]] | None = None
    ) -> str:
        """The column to predict: front matter ``target``, else what the prose says to predict
        (a verb of predicting, a question, or a value of a column of few labels that the brief
        names: ``values`` maps such columns to their labels)."""
        if "target" in self.front:
            wanted = str(self.front["target"])
            found = _match_column(wanted, columns)
            if found is None:
                raise TargetNotFoundError(_not_found(wanted, columns))
            return found
        for match in TARGET_IS.finditer(self.prose):
            found = _longest_column_prefix(match.group(1), columns)
            if found is not None:
                return found
        for match in PREDICT.finditer(self.prose):
            # A column in parentheses in the same sentence names the target outright: "predict
            # which brand the customer buys (Purchase)", "estimate what a player should be paid
            # (Salary, in thousands)", where the words after the verb name someone else.
            end = SENTENCE_END.search(self.prose, match.end())
            sentence = self.prose[match.start() : end.start() if end else len(self.prose)]
            if INPUTS_CUE.match(match.group(1)):
                # The inputs first: "predict from the text of a tweet whether it was sent from
                # an Android (source)". The target is named after the question word, if at all.
                asked = QUESTION.search(sentence, match.start(1) - match.start())
                for aside in PARENTHESES.finditer(sentence[asked.end() :] if asked else ""):
                    found = _longest_column_prefix(re.split(r"[,;:]", aside.group(1))[0], columns)
                    if found is not None:
                        return found
                continue
            # Asides after "from", "using", ... describe the inputs: "predict price from size
            # (sqft)" asks for price.
            inputs = INPUTS_CUE.search(sentence)
            sentence = sentence[: inputs.start()] if inputs else sentence
            for aside in PARENTHESES.finditer(sentence):
                found = _longest_column_prefix(re.split(r"[,;:]", aside.group(1))[0], columns)
                if found is not None:
                    return found
            found = _longest_column_prefix(match.group(1), columns)
            if found is not None:
                return found
        for match in PREDICT.finditer(self.prose):
            found = _stem_column(match.group(1), columns)
            if found is not None:
                return found
        # No verb of predicting names a column: a question may ("Which applicants are likely
        # to be denied?" asks for deny). The last column it names, before its inputs.
        for match in QUESTION_SENTENCE.finditer(self.prose):
            question = match.group(1) or match.group(2)
            inputs = INPUTS_CUE.search(question)
            found = _last_column(question[: inputs.start()] if inputs else question, columns)
            if found is not None:
                return found
        # Or the question names a value of the target ("Detect which tweets were written on
        # an Android": Android is a value of source), in a verb's phrase or a question.
        if values:
            phrases = [m.group(0) for m in PREDICT.finditer(self.prose)]
            phrases += [m.group(1) or m.group(2) for m in QUESTION_SENTENCE.finditer(self.prose)]
            for phrase in phrases:
                found = _valued_column(phrase, values)
                if found is not None:
                    return found
        shown = ", ".join(list(columns)[:30])
        raise BriefError(
            "The brief does not say which column to predict. Add this front-matter line:\n"
            f"  target: <one of: {shown}>\n"
            "Or, if the service should recommend items to users, add `kind: recommendation`."
        )


def _number(text: str) -> str:
    """A number the prose wrote, as digits ("one" -> "1", "15.0" -> "15")."""
    value = NUMBER_WORDS.get(text.lower())
    return str(value) if value is not None else f"{float(text):g}"


def _split_front_matter(text: str, where: object) -> tuple[str, str]:
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return "", text
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() in ("---", "..."):
            return "\n".join(lines[1:index]), "\n".join(lines[index + 1 :])
    raise BriefError(
        f"The front matter of {where} starts with '---' but never ends: add a '---' line."
    )


def _normalise(raw: dict[Any, Any], where: object) -> dict[str, Any]:
    known = set(ALIASES) | PLAN_FIELDS | PROJECT_KEYS | {"task"}
    front: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).strip().lower().replace("-", "_")
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise BriefError(f'Unknown front-matter key "{key}" in {where}.{hint}')
        name = ALIASES.get(name, name)
        if name == "task" and str(value).strip().lower() in ("recommendation", "recommend"):
            name, value = "kind", "recommendation"
        elif name == "task" and str(value).strip().lower() in ("forecasting", "forecast"):
            name, value = "kind", "forecasting"
        elif name in ("task", "kind") and str(value).strip().lower() in LABELLED_KINDS:
            name, value = "kind", LABELLED_KINDS[str(value).strip().lower()]
        elif name == "task":
            value = _task(value, where)
        elif name == "exclude_columns" and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        elif value is None:
            continue
        front[name] = value
    return front


def _task(value: Any, where: object) -> str:
    text = str(value).strip().lower().replace(" ", "_")
    if text in TASK_WORDS.values():
        return text
    for word, task in TASK_WORDS.items():
        if text.startswith(word):
            return task
    raise BriefError(
        f'Unknown task "{value}" in {where}: use binary, multiclass, classification, regression, '
        "recommendation, forecasting, audio_classification or text_classification."
    )


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "_", name.strip().lower())


def _match_column(wanted: str, columns: Sequence[str]) -> str | None:
    if wanted in columns:
        return wanted
    by_key = {_key(c): c for c in columns}
    return by_key.get(_key(wanted))


def _longest_column_prefix(phrase: str, columns: Sequence[str]) -> str | None:
    """The column named by a run of words near the start of ``phrase``, longest run first.

    "whether a customer churned next month" finds "churned"; "monthly charges next year"
    finds "monthly_charges". An owner ("each country's life expectancy") is never the column:
    the run starts after it.
    """
    words = phrase.strip().split()
    for start in range(min(len(words), 4)):
        found = _run_at(words, start, columns)
        if found is not None:
            column, end = found
            # A compound's last noun is its head: "credit card expenditure" asks for
            # expenditure, not card. The next one or two words, before any linking word.
            for later in range(end, min(end + 2, len(words))):
                if words[later].lower() in LINKING_WORDS:
                    break
                head = _run_at(words, later, columns)
                if head is not None and head[0] != column:
                    return head[0]
            return column
    return None


def _run_at(words: Sequence[str], start: int, columns: Sequence[str]) -> tuple[str, int] | None:
    """The column the longest run of words from ``start`` names, and where the run ends."""
    for size in range(min(len(words) - start, 6), 0, -1):
        run = words[start : start + size]
        if any(POSSESSIVE.search(word) for word in run):
            continue
        found = _match_column(" ".join(run), columns) or _abbreviated(run, columns)
        if found is not None:
            return found, start + size
    return None


def _stem_column(phrase: str, columns: Sequence[str]) -> str | None:
    """The one column a word of ``phrase`` is another form of ("participates" for
    participation, "defaulted" for default): a shared start of 6 or more letters and at
    least three quarters of the shorter word. The last resort of :meth:`Brief.find_target`."""
    names = [(column, column.lower()) for column in columns]
    names = [(column, name) for column, name in names if re.fullmatch(r"[a-z]+", name)]
    # The first word that is a form of some column decides ("survival of passengers" is
    # survived, though "passengers" is a form of passengerClass too); two columns: no guess.
    for word in (re.sub(r"\W", "", word.lower()) for word in phrase.split()):
        found = {
            column
            for column, name in names
            if (shared := len(os.path.commonprefix([word, name]))) >= 6
            and shared >= 0.75 * min(len(word), len(name))
            or _inflects(word, name)
        }
        if found:
            return found.pop() if len(found) == 1 else None
    return None


def _inflects(word: str, name: str) -> bool:
    """Whether ``word`` is ``name`` with an English ending: votes, voted and voting for vote,
    denied and denies for deny, participates for participate. Names of 3+ letters only."""
    if len(name) < 3 or not word.startswith(name[:-1]):
        return False
    stem = name[:-1] if name.endswith("e") or name.endswith("y") else name
    forms = {name + "s", name + "es", stem + "ed", stem + "ing", name + "d"}
    if name.endswith("y"):
        forms |= {stem + "ied", stem + "ies"}
    return word in forms


def _last_column(phrase: str, columns: Sequence[str]) -> str | None:
    """The column named last in ``phrase``, by its name (or a run of words that spells it,
    "low birth weight" for lowbirthweight), else by a form of it ("denied" for deny)."""
    words = [re.sub(r"^\W+|\W+$", "", word) for word in phrase.split()]
    words = [word for word in words if word]
    found: tuple[int, str] | None = None
    for start in range(len(words)):
        run = _run_at(words, start, columns)
        if run is not None and (found is None or run[1] > found[0]):
            found = (run[1], run[0])
    if found is not None:
        return found[1]
    for word in reversed(words):
        stem = _stem_column(word, columns)
        if stem is not None:
            return stem
    return None


def _valued_column(phrase: str, values: Mapping[str, Sequence[str]]) -> str | None:
    """The one column a word of ``phrase`` is a label of, or a word of a label of ("an
    Android" for source, whose labels include "Twitter for Android"); None if several."""
    words = {w.lower() for w in re.findall(r"[A-Za-z][\w-]{2,}", phrase)} - PLAIN_WORDS
    found = set()
    for column, labels in values.items():
        tokens = {str(label).lower() for label in labels}
        tokens |= {t.lower() for label in labels for t in re.findall(r"[\w-]+", str(label))}
        if words & tokens:
            found.add(column)
    return found.pop() if len(found) == 1 else None


def _abbreviated(words: Sequence[str], columns: Sequence[str]) -> str | None:
    """The column whose name shortens two or more words, each to its first 3+ letters: "life
    expectancy" is lifeExp, "gdp per capita" gdpPercap."""
    if len(words) < 2:
        return None
    run = [re.sub(r"\W", "", word.lower()) for word in words]
    for column in columns:
        if _shortens(re.sub(r"[\W_]", "", column.lower()), run):
            return column
    return None


def _shortens(name: str, words: Sequence[str]) -> bool:
    if not words:
        return not name
    word = words[0]
    if not word:
        return False
    return any(
        name.startswith(word[:size]) and _shortens(name[size:], words[1:])
        for size in range(len(word), min(len(word), 3) - 1, -1)
    )


def _not_found(wanted: str, columns: Sequence[str]) -> str:
    lowered = {c.lower(): c for c in columns}
    close = difflib.get_close_matches(wanted.lower(), list(lowered), n=3, cutoff=0.5)
    message = f'The target column "{wanted}" is not in the data.'
    if close:
        message += " Did you mean: " + ", ".join(lowered[c] for c in close) + "?"
    shown = ", ".join(list(columns)[:30])
    example = lowered[close[0]] if close else (list(columns) or ["<column>"])[0]
    return f"{message}\nColumns: {shown}\nFix the front-matter line, e.g.  target: {example}"
