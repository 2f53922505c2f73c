"""Audio *models*: the MFCC + logistic regression baseline and a small CNN on log-mels, both
exported to ONNX and served by ONNX Runtime (:class:`OnnxModel`).

The CNN (PyTorch, CPU) is trained seeded and deterministic (``torch.use_deterministic_algorithms``,
a fixed thread count, seeded batches, augmentation and mixup) by a :class:`Recipe` (AdamW, a
one-cycle or cosine learning rate, label smoothing, SpecAugment masks), with early stopping on
the validation loss; its ONNX graph answers the class logits and the penultimate-layer
embedding (for drift).
:func:`quantize` writes a static int8 QDQ copy calibrated on training clips; training measures
both and serves the faster one when its accuracy stays within ``audio.quantize_tolerance``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

LOGITS, EMBEDDING, INPUT = "logits", "embedding", "features"
OPSET = 17


@dataclass(frozen=True)
class Fitted:
    """A trained model as its ONNX bytes, and what it learnt about its training run."""

    family: str
    onnx: bytes
    epochs: int = 0
    history: tuple[dict[str, float], ...] = ()
    #: The trained torch module (the CNN's), for measuring it eager; never saved.
    module: Any = field(default=None, compare=False, repr=False)


class OnnxModel:
    """An ONNX graph loaded for scoring: features -> (probabilities, embeddings)."""

    def __init__(self, model: bytes | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(
            source, options, providers=["CPUExecutionProvider"]
        )
        self.outputs = [output.name for output in self.session.get_outputs()]

    def run(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (rows sum to 1) and embeddings of a batch of features."""
        answers = dict(zip(self.outputs, self.session.run(None, {INPUT: features}), strict=True))
        if LOGITS in answers:
            return softmax(answers[LOGITS]), answers[EMBEDDING if EMBEDDING in answers else LOGITS]
        # skl2onnx's classifier: label and probabilities; the embedding is the input itself.
        return np.asarray(answers["probabilities"], dtype=np.float32), features


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


# --- the baseline -----------------------------------------------------------------------------


def fit_baseline(features: np.ndarray, labels: np.ndarray, seed: int) -> Fitted:
    """Standardised MFCC statistics -> multinomial logistic regression, as ONNX."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = make_pipeline(
        StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    )
    pipeline.fit(features, labels)
    graph = to_onnx(
        pipeline,
        features[:1],
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
        initial_types=None,
        target_opset={"": OPSET, "ai.onnx.ml": 3},
        final_types=None,
    )
    graph.graph.input[0].name = INPUT
    for node in graph.graph.node:
        node.input[:] = [INPUT if name == "X" else name for name in node.input]
    return Fitted("mfcc_logistic", graph.SerializeToString())


# --- the CNN ----------------------------------------------------------------------------------


def build_cnn(n_classes: int, width: int) -> Any:
    """Three conv blocks (``width``, 2x, 4x channels; batch norm, ReLU, max pooling after the
    first two) over the log-mel, global average pooling to a ``4 * width``-dimensional
    embedding, dropout, a linear head."""
    import torch
    from torch import nn

    class SmallCnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()

            def block(inputs: int, outputs: int, pool: bool) -> list[nn.Module]:
                layers: list[nn.Module] = [
                    nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
                    nn.BatchNorm2d(outputs),
                    nn.ReLU(),
                ]
                return [*layers, nn.MaxPool2d(2)] if pool else layers

            self.body = nn.Sequential(
                *block(1, width, True), *block(width, 2 * width, True),
                *block(2 * width, 4 * width, False)
            )
            self.dropout = nn.Dropout(0.2)
            self.head = nn.Linear(4 * width, n_classes)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            embedding = self.body(x).mean(dim=(2, 3))
            return self.head(self.dropout(embedding)), embedding

    return SmallCnn()


@dataclass(frozen=True)
class Augment:
    """Seeded training-only augmentation of log-mel batches (n, 1, mels, frames): time shift
    (roll by up to ``shift`` of the frames), gain (a constant offset on the normalised log
    scale), additive noise, and SpecAugment's masks: ``masks`` bands of up to ``mask_width`` of
    the mels, and as many spans of up to ``mask_width`` of the frames, set to the clip's mean
    (0 after normalisation). A new array: the stored features are never changed."""

    shift: float = 0.1
    gain: float = 0.3
    noise: float = 0.1
    masks: int = 2
    mask_width: float = 0.15

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = batch.copy()
        mels, frames = batch.shape[-2:]
        limit = max(int(frames * self.shift), 1)
        for i, steps in enumerate(rng.integers(-limit, limit + 1, size=len(batch))):
            out[i] = np.roll(out[i], int(steps), axis=-1)
        out += rng.uniform(-self.gain, self.gain, size=(len(batch), 1, 1, 1)).astype(np.float32)
        out += rng.normal(0.0, self.noise, size=out.shape).astype(np.float32)
        for i in range(len(batch)):
            for axis, size in ((2, mels), (3, frames)):
                for _ in range(self.masks):
                    width = int(rng.integers(0, int(size * self.mask_width) + 1))
                    start = int(rng.integers(0, size - width + 1))
                    index: list[Any] = [i, slice(None), slice(None), slice(None)]
                    index[axis] = slice(start, start + width)
                    out[tuple(index)] = 0.0
        return out


@dataclass(frozen=True)
class Recipe:
    """How the CNN is trained: the ``audio`` config keys of the same names (their defaults,
    and the validation runs that chose them, are in config.py and docs/benchmarks.md)."""

    epochs: int
    patience: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    width: int
    augment: bool
    masks: int
    mixup: float
    label_smoothing: float
    schedule: str


def fit_cnn(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    n_classes: int,
    seed: int,
    threads: int,
    recipe: Recipe,
) -> Fitted:
    """Train the CNN on (log-mels (n, 1, mels, frames), label codes) with early stopping on the
    validation loss; the best epoch's weights, exported to ONNX."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(seed)
    features, labels = train
    model = build_cnn(n_classes, recipe.width)
    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate,
                                  weight_decay=recipe.weight_decay)
    steps_per_epoch = -(-len(features) // recipe.batch_size)
    scheduler = _scheduler(optimiser, recipe, steps_per_epoch)
    loss_of = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    held_loss_of = nn.CrossEntropyLoss()
    held_x = torch.from_numpy(validation[0])
    held_y = torch.from_numpy(validation[1].astype(np.int64))
    augmenter = Augment(masks=recipe.masks) if recipe.augment else None
    best_loss, best_state, best_epoch, waited = np.inf, None, 0, 0
    history: list[dict[str, float]] = []
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        order = rng.permutation(len(features))
        total = 0.0
        for start in range(0, len(order), recipe.batch_size):
            rows = order[start : start + recipe.batch_size]
            batch = features[rows]
            if augmenter is not None:
                batch = augmenter(batch, rng)
            targets = torch.from_numpy(labels[rows].astype(np.int64))
            optimiser.zero_grad()
            if recipe.mixup > 0:
                # Mixup: each clip blended with another of the batch, the loss blended alike.
                weight = float(rng.beta(recipe.mixup, recipe.mixup))
                partner = rng.permutation(len(rows))
                batch = weight * batch + (1.0 - weight) * batch[partner]
                logits, _ = model(torch.from_numpy(batch.astype(np.float32)))
                loss = weight * loss_of(logits, targets) + (1.0 - weight) * loss_of(
                    logits, targets[torch.from_numpy(partner)]
                )
            else:
                logits, _ = model(torch.from_numpy(batch))
                loss = loss_of(logits, targets)
            loss.backward()
            optimiser.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.item() * len(rows)
        model.eval()
        with torch.no_grad():
            logits, _ = model(held_x)
            held_loss = float(held_loss_of(logits, held_y))
            held_accuracy = float((logits.argmax(dim=1) == held_y).float().mean())
        history.append(
            {"epoch": epoch, "train_loss": total / len(features),
             "validation_loss": held_loss, "validation_accuracy": held_accuracy}
        )
        log.info("Epoch %d: validation loss %.4f, accuracy %.4f.", epoch, held_loss,
                 held_accuracy)
        if held_loss < best_loss - 1e-4:
            best_loss, best_epoch, waited = held_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
            if waited >= recipe.patience:
                log.info("Early stop after epoch %d (best %d).", epoch, best_epoch)
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return Fitted("cnn", export_onnx(model, features[:1]), best_epoch, tuple(history), model)


def _scheduler(optimiser: Any, recipe: Recipe, steps_per_epoch: int) -> Any:
    """The learning rate over the ``recipe.epochs`` cap, stepped per batch: constant, cosine
    decay to zero, or one-cycle (warm-up for 30% of the steps, then cosine down)."""
    import torch

    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=total)
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=recipe.learning_rate, total_steps=total
        )
    return None


def export_onnx(model: Any, example: np.ndarray) -> bytes:
    """The network alone (features are computed outside) as ONNX bytes, batch axis dynamic."""
    import tempfile

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (torch.from_numpy(example),),
            str(target),
            input_names=[INPUT],
            output_names=[LOGITS, EMBEDDING],
            dynamic_axes={INPUT: {0: "batch"}, LOGITS: {0: "batch"}, EMBEDDING: {0: "batch"}},
            opset_version=OPSET,
            # The TorchScript exporter: the dynamo one needs onnxscript and gives the same graph
            # for this network.
            dynamo=False,
        )
        return target.read_bytes()


# --- quantisation -----------------------------------------------------------------------------


def quantize(model: bytes, calibration: np.ndarray) -> bytes:
    """A static int8 QDQ copy of ``model`` (per-channel weights, activations calibrated by
    MinMax on ``calibration`` features)."""
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT: calibration[i : i + 1]} for i in range(len(calibration))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        source, prepared, target = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        source.write_bytes(model)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QInt8,
        )
        return target.read_bytes()


def latency_ms(model: OnnxModel, example: np.ndarray, repeats: int = 200) -> float:
    """Median milliseconds of one single-clip run (after a warm-up)."""
    for _ in range(10):
        model.run(example)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.run(example)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)

