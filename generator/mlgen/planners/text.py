"""The heuristic planner's decisions for a text brief ("classify support tickets by team",
"tell great reviews from the rest"): a free-text column and a label to predict.

The text column is the profile's free-text column with the longest texts; the label is the
column the brief names, else the only column holding a few classes. The text alone is the input
(columns beside it are added by name: text_numeric_columns, text_categorical_columns). Whatever
the brief's front matter states wins.
"""

from __future__ import annotations

import re
from typing import Any

from mlgen.brief import Brief
from mlgen.errors import BriefError, PlanError
from mlgen.plan import Plan
from mlgen.profile import Profile

# A text brief asks to sort texts: a verb of classifying and a noun of written text.
SORT = re.compile(r"\b(?:classif\w*|categori[sz]\w*|label\w*|triag\w*|rout(?:e|es|ing)|sort\w*|"
                  r"tag(?:s|ging)?|tell\b[^.]{0,40}\bfrom)\b", re.I)
TEXTS = re.compile(r"\b(?:texts?|reviews?|tickets?|messages?|e-?mails?|comments?|tweets?|"
                   r"posts?|documents?|complaints?|feedback|sentences?|descriptions?|"
                   r"transcripts?|notes?|articles?|headlines?|reports?|summar(?:y|ies))\b", re.I)
RARE = 0.10
# A label column holds at most this many classes.
MAX_CLASSES = 100
MIN_WORDS = 4


def reads(brief: Brief, profile: Profile) -> bool:
    """Whether the brief asks for the text kind: stated (``kind``), else no tabular task is
    stated, the data has a free-text column, and the prose asks to classify texts or asks a
    question of them ("predict from the text of a review whether ...", "detect which tweets
    ...", "from the remarks, predict ..." where remarks is the text column)."""
    if brief.kind:
        return brief.kind == "text"
    if "task" in brief.front:
        return False
    text = _text_column(brief, profile)
    if text is None:
        return False
    if SORT.search(brief.prose) and TEXTS.search(brief.prose):
        return True
    return _asks_of_texts(brief.prose, text)


def _asks_of_texts(prose: str, text: str) -> bool:
    """Whether the prose reads the texts to answer its question: the texts are what a
    prediction is made from ("from the text of a review", "using the remarks"), or what the
    question is about ("which tweets", "whether a review")."""
    name = r"[\s_.-]+".join(re.escape(w) for w in re.split(r"[\W_]+", text) if w)
    noun = rf"(?:{TEXTS.pattern}|\b{name}\b)" if name else TEXTS.pattern
    inputs = rf"\b(?:from|using|given|based\s+on|by\s+reading)\s+(?:[\w']+\s+){{0,3}}?{noun}"
    about = rf"\b(?:which|whether|if)\s+(?:the\s+|a\s+|an\s+)?{noun}"
    return re.search(f"{inputs}|{about}", prose, re.I) is not None


def plan_text(brief: Brief, profile: Profile) -> Plan:
    text = _text_column(brief, profile)
    if text is None:
        raise PlanError(
            f"No column of {profile.source.name} holds free text (several words per row): state "
            "it in the brief's front matter (text_column: <column>)."
        )
    target = _label(brief, profile, text)
    counts = profile.target(target).class_counts
    if not counts:
        raise PlanError(f'"{target}" is a continuous number: the text kind classifies. Name a '
                        "column of classes as the target.")
    values: dict[str, Any] = {"kind": "text", "data_path": str(profile.source),
                              "target": target, "text_column": text}
    why = {
        "kind": "the brief asks to classify texts" + (" (stated)" if brief.kind else ""),
        "data_path": "the brief's data file, read in place (absolute path)",
        "target": "named in the brief" if "target" in brief.front else
        "what the brief says to predict, else the only column of classes",
        "text_column": "stated in the brief" if "text_column" in brief.front else
        "the free-text column with the longest texts",
        "text_numeric_columns": "the text alone: add columns beside it by name",
        "text_categorical_columns": "the text alone: add columns beside it by name",
    }
    share = min(counts.values()) / sum(counts.values())
    rare = share < RARE
    # Balanced class weights for every text plan: on the fine-food reviews (35% "other") they
    # raised validation accuracy from 0.788 to 0.815 at the best C (docs/benchmarks.md).
    values["class_weight"] = "balanced"
    values["primary_metric"] = "f1_macro" if rare else "accuracy"
    why["primary_metric"] = (
        f"the rarest class is {share:.1%} of the rows" + (": scored by macro F1" if rare else "")
    )
    why["class_weight"] = (
        f"the rarest class is {share:.1%} of the rows: classes weighted by their inverse "
        "frequency (for text it raised accuracy as well as macro F1 in the benchmark)"
    )
    overrides = {k: v for k, v in brief.plan_overrides.items() if k in Plan.model_fields}
    values.update(overrides)
    why.update({name: "stated in the brief" for name in overrides})
    plan = Plan.build(values | {"rationale": why})
    plan.check_columns(profile.column_names)
    return plan


def _text_column(brief: Brief, profile: Profile) -> str | None:
    stated = brief.front.get("text_column")
    if stated:
        return str(stated)
    texts = [c.name for c in profile.columns if c.kind == "text" and not c.mostly_missing]
    if not texts:
        return None
    lengths = {name: profile.frame[name].dropna().astype(str).str.len().mean() for name in texts}
    return max(texts, key=lengths.__getitem__)


def _label(brief: Brief, profile: Profile, text: str) -> str:
    try:
        # The label holds classes: a column of a different value on nearly every row (a
        # product id the review names) is no label, whatever the brief calls it.
        columns = [c.name for c in profile.columns if c.name != text and (
            "target" in brief.front or (not c.id_like and 2 <= c.n_unique <= MAX_CLASSES))]
        labels = {c: v for c, v in profile.labels.items() if c in columns}
        return brief.find_target(columns, labels)
    except BriefError:
        candidates = [c.name for c in profile.columns
                      if c.name != text and c.kind in ("categorical", "boolean")
                      and not c.id_like and 2 <= c.n_unique <= MAX_CLASSES]
        if len(candidates) == 1:
            return candidates[0]
        # "Classify each report by its type of breach" beside a column Type.of.Breach: the one
        # column of classes whose name, read as words, the prose says.
        said = [c for c in candidates if _says_name(brief.prose, c)]
        if len(said) == 1:
            return said[0]
        raise BriefError(
            "The brief does not say which column holds the label. Add this front-matter line:\n"
            f"  target: <one of: {', '.join(candidates or profile.column_names[:20])}>"
        ) from None


def _says_name(prose: str, column: str) -> bool:
    """Whether the prose says a column's name as words (Type.of.Breach: "type of breach"), in
    its order with at most two words between ("how many birds were struck": birds_struck)."""
    words = [w for w in re.split(r"[\W_]+", column) if w]
    if not words:
        return False
    phrase = r"[\s_.-]+(?:\w+\s+){0,2}?".join(re.escape(w) for w in words)
    # A full stop ends the sentence, not the name, unless a word follows it (Type.of).
    return re.search(rf"(?<![\w.-]){phrase}(?![\w-]|\.\w)", prose, re.I) is not None
