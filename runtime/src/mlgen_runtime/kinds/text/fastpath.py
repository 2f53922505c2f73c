"""The text kind's *fast path*: a review's class probabilities without scikit-learn's per-call
machinery, compiled at load from the fitted pipeline.

Per request, ``pipeline.predict_proba`` of one review spent 2.2 ms (0.66 ms the word TF-IDF,
1.23 ms the character one), most of it in building a one-row DataFrame, validating it, and
building and checking sparse matrices, not in arithmetic. :class:`TextScorer` reads the fitted
parts once: each ``TfidfVectorizer``'s own preprocessor, tokenizer and n-gram functions, its
vocabulary, ``idf_``, ``sublinear_tf`` and ``norm``; the tabular columns' imputers, scalers and
encoders (compiled as the tabular kind's fast path compiles them, serving/fastpath.py); the
logistic regression's coefficients. A record then costs dictionary lookups, a few numpy calls
on the review's own terms and a dot product with their coefficients.

Character n-grams within words (``char_wb``) are the n-grams of each whitespace-separated word
in turn (scikit-learn's ``_char_wb_ngrams`` loops over ``text.split()``), so a word's
vocabulary indices are computed once, with the vectorizer's own function, and kept in a bounded
cache: reviews repeat their words.

Nothing is trusted blindly: :func:`compile_scorer` compares it with the pipeline on the texts
training kept for it (validation reviews) and on probe records (whitespace, accents, unseen
words, missing and unseen tabular values); any difference above ``PARITY_TOLERANCE`` in a
probability, or a different label, and the pipeline serves, with the reason logged and shown in
``/metadata``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from ...errors import NotCompilable
from ...serving.fastpath import PARITY_TOLERANCE, Block, _block, parity_error
from .model import TOKEN

log = logging.getLogger(__name__)

SERVING_PATH = "numpy"
# Distinct words whose character n-gram indices are kept (a few MB at most).
WORD_CACHE = 100_000
# Probe texts beside the kept validation reviews: whitespace of every kind, case, accents,
# digits and punctuation, words no vocabulary holds, a single character, repeated words.
PROBE_TEXTS = [
    "Great coffee!! Will buy again.",
    "  leading,\ttabs\nand\r\nnewlines   and  double  spaces  ",
    "CAPITALS and MiXeD case, café crème brûlée, naïve façade",
    "zxqv blorft quenzil snarfle gribble",
    "a",
    "1 22 333 4444 $5.99 10/10 :-) <br /> <br />",
    "good good good good good good good good bad",
    "\u00a0non-breaking\u2003em space\u3000ideographic",
    "!!!",
]


class TextScorer:
    """Records (the text column and tabular columns, validated) -> class probabilities, as
    the fitted pipeline's ``predict_proba``; :meth:`words` also gives each text's word tokens
    (for the drift window, which would otherwise tokenise it again)."""

    def __init__(self, pipeline: Any, text_column: str) -> None:
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import LogisticRegression

        features, model = pipeline.named_steps.get("features"), pipeline.named_steps.get("model")
        if not isinstance(features, ColumnTransformer) or not isinstance(
            model, LogisticRegression
        ):
            raise NotCompilable("the pipeline is not features -> LogisticRegression")
        self.text_column = text_column
        # (n_features, n_classes): a term's coefficients are one contiguous row.
        self.coef = np.ascontiguousarray(model.coef_.T, dtype=np.float64)
        self.intercept = np.asarray(model.intercept_, dtype=np.float64)
        self.binary = len(model.classes_) == 2
        # A binary model's one column of coefficients, and its intercept as a float.
        self.coef0 = np.ascontiguousarray(self.coef[:, 0])
        self.intercept0 = float(self.intercept[0])
        self.texts: list[_Tfidf] = []
        self.tabular: list[tuple[slice, list[str], Block]] = []
        for name, transformer, columns in features.transformers_:
            if transformer == "drop" or len(columns) == 0:
                continue
            where = features.output_indices_[name]
            if name == "text":
                self.texts = _text_blocks(transformer, where.start)
            elif not all(isinstance(column, str) for column in columns):
                raise NotCompilable("ColumnTransformer columns are not selected by name")
            else:
                self.tabular.append((where, list(columns), _block(transformer, list(columns))))
        if not self.texts:
            raise NotCompilable("the pipeline has no TF-IDF of the text column")
        if self.binary:
            for block in self.texts:
                block.bind(self.coef0[block.offset:block.offset + len(block.vocabulary)])
        # The drift window's tokens (model.tokens) are the word vectorizer's own when it
        # lowercases and uses the default pattern; otherwise the window tokenises itself.
        self.word_block = next((b for b in self.texts if b.tokens_like_drift), None)

    def decision(self, record: dict[str, Any], words: list[str] | None = None) -> np.ndarray:
        text = record[self.text_column]
        total = self.intercept.copy()
        for block in self.texts:
            columns, values = block(text, words if block is self.word_block else None)
            if len(columns):
                total += values @ self.coef[columns]
        for where, names, encode in self.tabular:
            total += np.asarray(encode.row([record.get(n) for n in names])) @ self.coef[where]
        return total

    def one(self, record: dict[str, Any], words: list[str] | None = None) -> list[float]:
        """One record's class probabilities as Python floats (the single-record route's
        path: no arrays built for the answer, the sigmoid of a binary model in ``math``)."""
        if self.binary and not self.tabular:
            text = record[self.text_column]
            decision = self.intercept0
            for block in self.texts:
                decision += block.contribution(text, words if block is self.word_block
                                               else None)
            # LogisticRegression._predict_proba_lr: the sigmoid of the one decision value
            # (written so that neither branch overflows).
            if decision >= 0:
                positive = 1.0 / (1.0 + math.exp(-decision))
            else:
                exponential = math.exp(decision)
                positive = exponential / (1.0 + exponential)
            return [1.0 - positive, positive]
        probabilities: list[float] = self._probabilities(
            self.decision(record, words)[np.newaxis, :])[0].tolist()
        return probabilities

    def words(self, text: str) -> list[str]:
        """The word tokens of ``text`` as the drift window counts them (model.tokens)."""
        return self.word_block.tokens(text) if self.word_block else TOKEN.findall(text.lower())

    def predict_proba(
        self, records: Sequence[dict[str, Any]], words: Sequence[list[str]] | None = None
    ) -> np.ndarray:
        if self.binary and not self.tabular:
            # The served single-record path, record by record: the parity check
            # (check_scorer) compares exactly what /predict answers.
            return np.array([self.one(record, None if words is None else words[i])
                             for i, record in enumerate(records)], dtype=np.float64)
        decisions = np.array([
            self.decision(record, None if words is None else words[i])
            for i, record in enumerate(records)
        ])
        return self._probabilities(decisions)

    def _probabilities(self, decisions: np.ndarray) -> np.ndarray:
        if self.binary:
            # LogisticRegression._predict_proba_lr: the sigmoid of the one decision value.
            positive = 1.0 / (1.0 + np.exp(-decisions[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        # Several classes: the softmax of the decisions (multinomial).
        shifted = np.exp(decisions - decisions.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


class _Tfidf:
    """One fitted ``TfidfVectorizer`` as (columns, values) of a text's TF-IDF row."""

    def __init__(self, vectorizer: Any, offset: int, weight: float) -> None:
        if callable(vectorizer.analyzer) or vectorizer.analyzer not in ("word", "char_wb",
                                                                         "char"):
            raise NotCompilable(f"a custom analyzer ({vectorizer.analyzer!r})")
        if vectorizer.input != "content" or vectorizer.binary:
            raise NotCompilable("a vectorizer reading files or counting binary terms")
        if vectorizer.norm not in ("l2", "l1", None):
            raise NotCompilable(f"norm {vectorizer.norm!r}")
        self.vectorizer = vectorizer
        self.offset = offset
        self.weight = weight
        self.vocabulary: dict[str, int] = vectorizer.vocabulary_
        self.idf = getattr(vectorizer, "idf_", None) if vectorizer.use_idf else None
        self.dtype = vectorizer.dtype
        self.preprocess = vectorizer.build_preprocessor()
        self.kind = vectorizer.analyzer
        if self.kind == "word":
            self.tokenize = vectorizer.build_tokenizer()
            stop = vectorizer.get_stop_words()
            self.ngrams = lambda tokens: vectorizer._word_ngrams(tokens, stop)
        elif self.kind == "char":
            self.analyze = vectorizer.build_analyzer()
        else:
            self.word_indices = lru_cache(maxsize=WORD_CACHE)(self._word_indices)
        self.tokens_like_drift = (
            self.kind == "word" and vectorizer.lowercase and vectorizer.strip_accents is None
            and vectorizer.preprocessor is None and vectorizer.tokenizer is None
            and vectorizer.token_pattern == TOKEN.pattern
        )

    def _word_indices(self, word: str) -> tuple[int, ...]:
        get = self.vocabulary.get
        return tuple(i for gram in self.vectorizer._char_wb_ngrams(word)
                     if (i := get(gram)) is not None)

    def tokens(self, text: str) -> list[str]:
        return self.tokenize(self.preprocess(self.vectorizer.decode(text)))

    def indices(self, text: str, tokens: list[str] | None) -> list[int]:
        get = self.vocabulary.get
        if self.kind == "word":
            grams = self.ngrams(self.tokens(text) if tokens is None else tokens)
            return [i for gram in grams if (i := get(gram)) is not None]
        if self.kind == "char":
            return [i for gram in self.analyze(text) if (i := get(gram)) is not None]
        # char_wb: the vectorizer's own whitespace normalisation, then its n-grams per word.
        normalised = self.vectorizer._white_spaces.sub(
            " ", self.preprocess(self.vectorizer.decode(text))
        )
        found: list[int] = []
        for word in normalised.split():
            found.extend(self.word_indices(word))
        return found

    def bind(self, coef: np.ndarray) -> None:
        """Precompute, for a binary model's coefficients of this block's terms, what
        :meth:`contribution` multiplies: idf x coefficient x block weight, and idf squared
        (in float64: the pipeline's float32 TF-IDF differs by ~1e-7, within the parity
        check's tolerance)."""
        idf = np.ones(len(self.vocabulary)) if self.idf is None else np.asarray(
            self.idf, dtype=np.float64)
        self.idf_coef = idf * np.asarray(coef, dtype=np.float64) * self.weight
        self.idf_64 = idf
        self.idf_squared = idf * idf

    def contribution(self, text: str, tokens: list[str] | None) -> float:
        """This block's share of a binary model's decision value: the dot product of the
        text's TF-IDF row (counts, 1 + log, idf, norm) with the bound coefficients, in fewer
        array operations than :meth:`__call__` and the coefficients' gather."""
        found = self.indices(text, tokens)
        if not found:
            return 0.0
        terms, counts = np.unique(np.array(found, dtype=np.intp), return_counts=True)
        if self.vectorizer.sublinear_tf:
            tf = np.log(counts)
            tf += 1.0
        else:
            tf = counts.astype(np.float64)
        dot = float(tf @ self.idf_coef[terms])
        if self.vectorizer.norm == "l2":
            return dot / math.sqrt(float((tf * tf) @ self.idf_squared[terms]))
        if self.vectorizer.norm == "l1":
            return dot / float(tf @ self.idf_64[terms])
        return dot

    def __call__(self, text: str, tokens: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
        terms, counts = np.unique(np.array(self.indices(text, tokens), dtype=np.intp),
                                  return_counts=True)
        # TfidfTransformer.transform, in the vectorizer's dtype: counts, 1 + log, idf, norm.
        values = counts.astype(self.dtype)
        if self.vectorizer.sublinear_tf:
            np.log(values, values)
            values += 1.0
        if self.idf is not None:
            values *= self.idf[terms]
        if self.vectorizer.norm == "l2" and len(values):
            values /= np.sqrt(np.dot(values.astype(np.float64), values))
        elif self.vectorizer.norm == "l1" and len(values):
            values /= np.abs(values.astype(np.float64)).sum()
        return terms + self.offset, values.astype(np.float64) * self.weight


def _text_blocks(union: Any, start: int) -> list[_Tfidf]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    if not isinstance(union, FeatureUnion):
        raise NotCompilable("the text column is not a FeatureUnion of TF-IDF vectorizers")
    weights = union.transformer_weights or {}
    blocks, offset = [], start
    for name, vectorizer in union.transformer_list:
        if vectorizer == "drop":
            continue
        if not isinstance(vectorizer, TfidfVectorizer):
            raise NotCompilable(f"{type(vectorizer).__name__} is not a TfidfVectorizer")
        blocks.append(_Tfidf(vectorizer, offset, float(weights.get(name, 1.0))))
        offset += len(vectorizer.vocabulary_)
    return blocks


def probe_records(
    texts: Sequence[str], columns: list[str], text_column: str, categories: dict[str, list[Any]]
) -> list[dict[str, Any]]:
    """The kept texts and :data:`PROBE_TEXTS`, with the tabular columns cycling through their
    training categories, missing and unseen values (numbers: a spread and missing)."""
    records = []
    for row, text in enumerate([*texts, *PROBE_TEXTS]):
        record: dict[str, Any] = {text_column: text}
        for column in columns:
            if column == text_column:
                continue
            values = categories.get(column)
            if values is None:
                record[column] = [None, -1.0, 0.0, 2.5, 1e3][row % 5]
            else:
                choices = [*values, None, "\x00unseen value"]
                record[column] = choices[row % len(choices)]
        records.append(record)
    return records


def compile_scorer(
    pipeline: Any, text_column: str, columns: list[str], texts: Sequence[str]
) -> tuple[TextScorer | None, dict[str, Any]]:
    """The fast scorer when it matches ``pipeline`` on the probe records, and the report
    ``/metadata`` shows (path, records compared, largest difference, or why the pipeline
    serves)."""
    try:
        scorer = TextScorer(pipeline, text_column)
        report = check_scorer(scorer, pipeline, probe_records(
            texts, columns, text_column, _categories(pipeline)), columns)
    except NotCompilable as exc:
        report = {"path": "sklearn", "reason": str(exc)}
    except Exception as exc:  # a fast path that breaks leaves serving to the pipeline
        log.exception("Compiling the text fast path failed")
        report = {"path": "sklearn", "reason": f"compiling failed: {exc}"}
    if report["path"] != SERVING_PATH:
        log.warning("The text fast path is off (%s): the pipeline serves.", report["reason"])
        return None, report
    log.info("Serving with the text fast path (max difference %.2g on %d records)",
             report["max_error"], report["rows"])
    return scorer, report


def check_scorer(
    scorer: TextScorer, pipeline: Any, records: list[dict[str, Any]], columns: list[str]
) -> dict[str, Any]:
    """How ``scorer`` answers ``records`` against ``pipeline.predict_proba``: the path to
    serve (``numpy`` when every label is the same and every probability within
    ``PARITY_TOLERANCE``, else ``sklearn`` with the reason)."""
    expected = pipeline.predict_proba(pd.DataFrame(records, columns=columns))
    got = scorer.predict_proba(records)
    error = parity_error(expected, got)
    report: dict[str, Any] = {"rows": len(records), "tolerance": PARITY_TOLERANCE,
                              "max_error": error}
    labels = int(np.sum(expected.argmax(axis=1) != got.argmax(axis=1)))
    if error > PARITY_TOLERANCE or labels:
        reason = (f"on {len(records)} records its probabilities differ from the pipeline's "
                  f"by up to {error:.2g} and {labels} label(s) differ")
        return {**report, "path": "sklearn", "reason": reason}
    return {**report, "path": SERVING_PATH}


def _categories(pipeline: Any) -> dict[str, list[str]]:
    """Each categorical column's training categories (the text kind's one-hot part)."""
    from ...serving.fastpath import _encoder_of

    found: dict[str, list[str]] = {}
    for _, transformer, names in pipeline.named_steps["features"].transformers_:
        encoder = _encoder_of(transformer) if hasattr(transformer, "steps") else None
        if encoder is not None:
            for name, values in zip(names, encoder.categories_, strict=True):
                found[name] = [value for value in values if isinstance(value, str)]
    return found
