"""Training the sequence model that reads a blob of touching digits whole (runtime/sequence.py).

A small fully convolutional network, trained with the CTC loss (Graves et al. 2006) on strips of touching
MNIST training digits and of non-digit marks labelled with no digits (toolkit/linedata.py):

    (28, 128, 1) -> conv 3x3x16, pool 2x2 -> conv 3x3x32, pool 2x1 -> conv 3x5x64 -> conv 7x1x96 (the height
    collapsed) -> 2 x conv 1x5x96 -> ``context`` residual blocks along the strip (conv 1x5x96 dilated 1, 2,
    4, ...) -> conv 1x1x11: logits for the digits and the blank at 64 steps across the strip.

Without the context blocks (``context=0``, the first shipped network, 27 M multiply-accumulates) each
step sees about 32 columns: a digit is about 14 wide, so a step sees one digit and its neighbours' edges, and
a long tail or a deep overlap misleads it. Each block adds 3 M multiply-accumulates and lets a step see 8 x its
dilation more columns (three blocks: 88 columns, five or six digits). A block starts as the identity (its batch
norm's scale is 0), so ``init`` can start from a trained network with fewer blocks and only learn what the
wider view adds. The strips are made once per run (the same for a seed), then
every epoch reads them in a new order; the learning rate follows a cosine from ``learning_rate`` to 0.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitkit.runtime.sequence import BLANK, FRAMES, LINE_HEIGHT, LINE_WIDTH
from digitkit.toolkit.errors import ToolkitError

SEQUENCE_CLASSES = BLANK + 1


@dataclass(frozen=True)
class LineTrainConfig:
    """One sequence-model training run."""

    data_dir: str | None = None
    out: str = "runs/lines.keras"
    lines: int = 360_000  # training strips, made once (120 000 for 12 epochs: 4 pp fewer validation strips read)
    val_lines: int = 4_000  # validation strips (validation-split digits, other negatives)
    epochs: int = 6
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0
    context: int = 3  # residual blocks along the strip, dilated 1, 2, 4, ... (0: the first shipped network)
    init: str | None = None  # start from this trained sequence model (.keras): its layers' weights are copied
    shift: int = 0  # training strips moved right by 0 to this many columns at random (validation strips never)


@dataclass(frozen=True)
class LineTrainResult:
    """What a run measured on its validation strips (greedy decoding)."""

    model_path: str
    line_accuracy: float  # digit strips read exactly
    digit_accuracy: float  # ... digits right in place, of all digits (an exact-length reading only)
    negative_silence: float  # non-digit strips read as no digit at all
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_line_model(keras: Any, context: int = LineTrainConfig.context) -> Any:
    layers = keras.layers
    inp = keras.Input(shape=(LINE_HEIGHT, LINE_WIDTH, 1), name="strip")
    x = inp
    for filters, kernel, pool in ((16, 3, (2, 2)), (32, 3, (2, 1)), (64, (3, 5), None)):
        x = layers.Conv2D(filters, kernel, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        if pool:
            x = layers.MaxPooling2D(pool)(x)
    x = layers.Conv2D(96, (LINE_HEIGHT // 4, 1), padding="valid", use_bias=False)(x)  # (1, 64, 96)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    for _ in range(2):  # along the strip: each step sees ~32 columns, a digit and its neighbours' edges
        x = layers.Conv2D(96, (1, 5), padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    for i in range(context):  # each step sees further along the strip; a block starts as the identity
        h = layers.Conv2D(96, (1, 5), dilation_rate=(1, 2 ** i), padding="same", use_bias=False,
                          name=f"context{i}_conv")(x)
        h = layers.BatchNormalization(gamma_initializer="zeros", name=f"context{i}_bn")(h)
        x = layers.ReLU(name=f"context{i}_relu")(layers.Add(name=f"context{i}_add")([x, h]))
    x = layers.Conv2D(SEQUENCE_CLASSES, 1, name="logits")(x)  # (1, FRAMES, 11)
    out = layers.Reshape((FRAMES, SEQUENCE_CLASSES), name="steps")(x)
    return keras.Model(inp, out, name="digit_lines")


def _data(config: LineTrainConfig) -> tuple[Any, Any]:
    from digitkit.toolkit.data import load_mnist, split_validation
    from digitkit.toolkit.linedata import make_lines
    from digitkit.toolkit.negatives import NegativesConfig, generate

    mnist = load_mnist(config.data_dir, allow_download=False)
    split = split_validation(mnist.x_train, mnist.y_train, seed=0)
    fams = {k: v for k, v in NegativesConfig().weights.items() if k not in ("pairs", "partial")}
    # About one non-digit tile per 6 training strips (each non-digit strip draws 1-4 of them), per family in
    # toolkit/negatives.py's proportions.
    neg_train = generate(split.x_train, families={k: max(1, v * config.lines // 600) for k, v in fams.items()},
                         seed=config.seed + 10)
    neg_val = generate(split.x_val, families={k: max(1, v * config.val_lines // 200) for k, v in fams.items()},
                       seed=config.seed + 20)
    train = make_lines(split.x_train, split.y_train, neg_train.x, config.lines, seed=config.seed + 1,
                       shift=config.shift)
    val = make_lines(split.x_val, split.y_val, neg_val.x, config.val_lines, seed=config.seed + 2)
    return train, val


def _start_from(keras: Any, model: Any, path: str) -> None:
    """Copy a trained sequence model's weights into ``model``, layer by layer in order; ``model``'s context
    blocks that the trained one lacks keep their identity start."""
    if not Path(path).is_file():
        raise ToolkitError(f"--init model {path} not found")
    old = keras.models.load_model(path, compile=False)
    src = [layer for layer in old.layers if layer.weights]
    dst = [layer for layer in model.layers if layer.weights]
    mine = [layer for layer in dst if not layer.name.startswith("context")]
    theirs = [layer for layer in src if not layer.name.startswith("context")]
    if [[w.shape for w in a.get_weights()] for a in mine] != [[w.shape for w in b.get_weights()] for b in theirs] \
            or len(src) - len(theirs) > len(dst) - len(mine):
        raise ToolkitError(f"--init model {path} is not a sequence model of this shape")
    by_name = {layer.name: layer for layer in src}
    for a, b in zip(mine, theirs, strict=True):
        a.set_weights(b.get_weights())
    for layer in dst:
        if layer.name.startswith("context") and layer.name in by_name:
            layer.set_weights(by_name[layer.name].get_weights())


def greedy(logits: np.ndarray) -> list[list[int]]:
    best = logits.argmax(-1)
    out = []
    for row in best:
        seq, prev = [], BLANK
        for c in row:
            if c != BLANK and c != prev:
                seq.append(int(c))
            prev = c
        out.append(seq)
    return out


def score(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, labels: np.ndarray,
          lengths: np.ndarray) -> tuple[float, float, float]:
    """(digit strips read exactly, digits right, non-digit strips read as nothing)."""
    reads = greedy(predict(x))
    truth = [labels[i, :lengths[i]].tolist() for i in range(len(x))]
    pos = lengths > 0
    exact = np.array([r == t for r, t in zip(reads, truth, strict=True)])
    right = sum(sum(a == b for a, b in zip(r, t, strict=False)) for r, t, p in zip(reads, truth, pos, strict=True)
                if p and len(r) == len(t))
    silent = np.array([len(r) == 0 for r in reads])
    return (float(exact[pos].mean()), float(right / max(1, lengths[pos].sum())),
            float(silent[~pos].mean()) if (~pos).any() else float("nan"))


def train_lines(config: LineTrainConfig, on_epoch: Callable[[int, dict[str, float]], None] | None = None
                ) -> LineTrainResult:
    """Train, keep the weights of the epoch with the best validation line accuracy, save ``config.out`` (and a
    ``.json`` beside it with the config and the figures)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    from tensorflow import keras

    start = time.monotonic()
    tf.keras.utils.set_random_seed(config.seed)
    train, val = _data(config)
    model = build_line_model(keras, config.context)
    if config.init:
        _start_from(keras, model, config.init)
    steps = int(np.ceil(len(train.x) / config.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps * config.epochs)
    opt = keras.optimizers.Adam(schedule)
    frames = tf.fill([config.batch_size], FRAMES)

    @tf.function
    def step(x, y, n):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.ctc_loss(y, logits, n, frames[:tf.shape(x)[0]], logits_time_major=False,
                                                 blank_index=BLANK))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    def predict(x: np.ndarray) -> np.ndarray:
        return model.predict((x.astype(np.float32) / 255.0)[..., None], batch_size=256, verbose=0)

    rng = np.random.default_rng(config.seed)
    best, best_weights = -1.0, None
    history = []
    for epoch in range(config.epochs):
        order = rng.permutation(len(train.x))
        losses = []
        for b in range(0, len(order) - config.batch_size + 1, config.batch_size):
            idx = order[b:b + config.batch_size]
            x = (train.x[idx].astype(np.float32) / 255.0)[..., None]
            losses.append(float(step(x, train.labels[idx], train.lengths[idx])))
        line, digit, silent = score(predict, val.x, val.labels, val.lengths)
        logs = {"loss": float(np.mean(losses)), "val_lines": line, "val_digits": digit, "val_silent": silent}
        history.append(logs)
        if on_epoch:
            on_epoch(epoch + 1, logs)
        if line > best:
            best, best_weights = line, model.get_weights()
    model.set_weights(best_weights)
    line, digit, silent = score(predict, val.x, val.labels, val.lengths)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, out)
    result = LineTrainResult(str(out), line, digit, silent, time.monotonic() - start)
    side = out.with_suffix(".json")
    tmp_side = side.with_name(side.name + ".tmp")
    tmp_side.write_text(json.dumps({"config": asdict(config), "result": result.to_dict(), "history": history},
                                   indent=2))
    os.replace(tmp_side, side)
    return result


@dataclass(frozen=True)
class LineExportResult:
    """The int8 sequence model and what it reads of validation strips, float beside int8."""

    out: str
    bytes: int
    float_lines: float
    int8_lines: float
    int8_digits: float
    int8_silence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_lines(model_path: str | os.PathLike[str], out: str | os.PathLike[str], data_dir: str | None = None,
                 seed: int = 0, calibration: int = 500) -> LineExportResult:
    """Convert a trained sequence model to a fully integer .tflite (uint8 strips in, uint8-quantized logits out),
    calibrated on training strips, and read the validation strips with it through the runtime's
    :class:`digitkit.runtime.sequence.SequenceModel` (and with the float model, for comparison)."""
    from digitkit.converters.tflite import convert_keras, quiet_tf
    from digitkit.runtime.sequence import SequenceModel
    from digitkit.toolkit.data import load_mnist, split_validation
    from digitkit.toolkit.linedata import make_lines

    with quiet_tf():
        import keras

    if not Path(model_path).is_file():
        raise ToolkitError(f"model file {model_path} not found; train one with `digitkit train-lines`")
    keras_model = keras.models.load_model(model_path, compile=False)
    mnist = load_mnist(data_dir, allow_download=False)
    split = split_validation(mnist.x_train, mnist.y_train, seed=0)
    cal = make_lines(split.x_train, split.y_train, np.zeros((0, 28, 28), np.uint8), calibration, seed=seed + 3)
    data = convert_keras(keras_model, "int8", "uint8", cal.x)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    _, val = _data(LineTrainConfig(data_dir=data_dir, lines=0, seed=seed))
    with quiet_tf():
        def float_predict(x: np.ndarray) -> np.ndarray:
            return keras_model.predict((x.astype(np.float32) / 255.0)[..., None], batch_size=256, verbose=0)

        f_line, _, _ = score(float_predict, val.x, val.labels, val.lengths)
    seq = SequenceModel(out)
    lines, digits, silence = score(lambda x: np.concatenate([seq.logits(x[i:i + 256]) for i in range(0, len(x), 256)]),
                                   val.x, val.labels, val.lengths)
    return LineExportResult(str(out), len(data), f_line, lines, digits, silence)
