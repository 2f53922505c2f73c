"""The text kind's *model*: TF-IDF of word and character n-grams (plus scaled numeric and
one-hot categorical columns, when the service has them) into a logistic regression, as one
scikit-learn ``Pipeline`` fitted on the training split, and its drift vocabulary.

Served as it was evaluated: the fitted pipeline, saved with skops (no pickle: loading checks
every type against scikit-learn's, numpy's and scipy's). skl2onnx was measured and is not the
serving path: it refuses ``char_wb`` n-grams, and its ``char`` tokenizer needs an
``en_US.UTF-8`` locale that a slim container lacks (ONNX Runtime fails at session start).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...config import TextConfig
from ...errors import ServiceError

MODEL_FILE = "pipeline.skops"
# The model fitted without the test rows, beside a served model refitted on all rows: the
# next training's gate re-scores it (train.py).
EVALUATED_FILE = "evaluated.skops"
# Texts kept beside the model for serving's parity check of its fast path (fastpath.py).
PARITY_FILE = "parity_texts.json"
PARITY_TEXTS = 200
# The word tokens TF-IDF counts (scikit-learn's default token pattern), for the OOV rate.
TOKEN = re.compile(r"(?u)\b\w\w+\b")
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


def build_pipeline(text: TextConfig, c: float, seed: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    words = TfidfVectorizer(ngram_range=(1, text.word_ngrams), min_df=text.min_df,
                            sublinear_tf=True, max_features=text.max_features, dtype=np.float32)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(text.char_ngrams),
                            min_df=text.min_df, sublinear_tf=True,
                            max_features=text.max_features, dtype=np.float32)
    parts: list[tuple[str, Any, Any]] = [
        ("text", FeatureUnion([("words", words), ("chars", chars)]), text.text_column)
    ]
    if text.numeric_columns:
        parts.append(("numeric", make_pipeline(SimpleImputer(), StandardScaler()),
                      list(text.numeric_columns)))
    if text.categorical_columns:
        parts.append(("categorical", make_pipeline(
            SimpleImputer(strategy="constant", fill_value="missing"),
            OneHotEncoder(handle_unknown="ignore")), list(text.categorical_columns)))
    weight = None if text.class_weight == "none" else "balanced"
    return Pipeline([
        ("features", ColumnTransformer(parts)),
        ("model", LogisticRegression(C=c, max_iter=3000, class_weight=weight,
                                     random_state=seed)),
    ])


def vectorizers(pipeline: Any) -> list[Any]:
    """The fitted pipeline's TF-IDF vectorizers: words, then characters."""
    union = pipeline.named_steps["features"].named_transformers_["text"]
    return [vectorizer for _, vectorizer in union.transformer_list]


def vocabulary(pipeline: Any) -> set[str]:
    """The word vocabulary (unigrams) the fitted pipeline knows."""
    return {term for term in vectorizers(pipeline)[0].vocabulary_ if " " not in term}


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def top_terms(texts: pd.Series, count: int = 50) -> tuple[list[str], list[int]]:
    """The ``count`` most frequent word tokens of ``texts`` and their counts, then the count
    of every other token (the last value)."""
    from collections import Counter

    counter: Counter[str] = Counter()
    for text in texts:
        counter.update(tokens(text))
    common = counter.most_common(count)
    other = sum(counter.values()) - sum(n for _, n in common)
    return [term for term, _ in common], [n for _, n in common] + [other]


def save_pipeline(pipeline: Any, folder: Path, texts: list[str] | None = None,
                  evaluated: Any = None) -> None:
    """Save with skops, the vocabularies' indices made Python ints first: skops writes every
    numpy integer as a file of its own, and the fine-food reviews' 69,000 terms took 290 s and
    89 MB to save (14 s to load); as ints, 6 s and 71 MB (3 s to load), with the same
    predictions, bit for bit (the lookups answer the same indices)."""
    import zipfile

    import skops.io as sio

    folder.mkdir(parents=True, exist_ok=True)
    for model, name in ((pipeline, MODEL_FILE), (evaluated, EVALUATED_FILE)):
        if model is None:
            continue
        for vectorizer in vectorizers(model):
            vectorizer.vocabulary_ = {term: int(index) for term, index in
                                      vectorizer.vocabulary_.items()}
        # Deflated: skops writes the vocabularies into its JSON schema, and the zip stored it
        # as is (81 MB for the fine-food reviews' pipeline; 2 MB deflated, in the same dump
        # time, loaded by the same type-checking loader).
        sio.dump(model, folder / name, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
    if texts is not None:
        import json

        (folder / PARITY_FILE).write_text(json.dumps(list(texts[:PARITY_TEXTS])))


def parity_texts(folder: Path) -> list[str]:
    """The texts training kept for the fast path's parity check (none in older bundles)."""
    import json

    path = Path(folder) / PARITY_FILE
    return [str(text) for text in json.loads(path.read_text())] if path.exists() else []


def load_pipeline(folder: Path, evaluated: bool = False) -> Any:
    """The saved pipeline (``evaluated``: the one fitted without the test rows, the served
    one when it is that); a type outside scikit-learn, numpy and scipy is refused."""
    import skops.io as sio

    path = Path(folder) / MODEL_FILE
    if evaluated and (Path(folder) / EVALUATED_FILE).exists():
        path = Path(folder) / EVALUATED_FILE
    untrusted = sio.get_untrusted_types(file=path)
    foreign = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if foreign:
        raise ServiceError(
            f"{path} holds types that are not scikit-learn's, numpy's or scipy's "
            f"({', '.join(foreign[:5])}): it was not written by this runtime. Retrain."
        )
    return sio.load(path, trusted=untrusted)
