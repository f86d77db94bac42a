"""The registered architectures. Each builder returns a plain Keras model: (28, 28, 1) floats in [0, 1] in,
11 softmax probabilities out (the digits 0-9 and "not a digit", see toolkit/negatives.py; ``classes=10`` builds
a digits-only model). Dropout is a training-only argument: the saved inference graph is rebuilt
with ``dropout=0`` so no regularisation layer ends up in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from digitkit.toolkit.errors import ToolkitError

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10  # the digits
WITH_NOT_A_DIGIT = NUM_CLASSES + 1  # the digits and "not a digit" (index 10): what `digitkit train` builds


@dataclass(frozen=True)
class ArchInfo:
    """What ``digitkit models`` prints for one architecture."""

    name: str
    description: str
    params: int
    macs: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "params": self.params, "macs": self.macs}


def _seed_tower(keras: Any, inputs: Any, dropout: float, batch_norm: bool, classes: int, prefix: str = "") -> Any:
    layers = keras.layers

    def name(part: str) -> str | None:  # Keras's own names unless in an ensemble (names must be unique there)
        return f"{prefix}{part}" if prefix else None

    x = inputs
    for i, filters in enumerate((16, 36)):
        x = layers.Conv2D(filters, 5, padding="same", use_bias=not batch_norm, name=name(f"conv{i}"))(x)
        if batch_norm:
            x = layers.BatchNormalization(name=name(f"bn{i}"))(x)
        x = layers.ReLU(name=name(f"relu{i}"))(x)
        x = layers.MaxPooling2D(2, name=name(f"pool{i}"))(x)
    x = layers.Flatten(name=name("flatten"))(x)  # 7 * 7 * 36 = 1764
    x = layers.Dense(128, use_bias=not batch_norm, name=name("fc"))(x)
    if batch_norm:
        x = layers.BatchNormalization(name=name("bn_fc"))(x)
    x = layers.ReLU(name=name("relu_fc"))(x)
    if dropout:
        x = layers.Dropout(dropout, name=name("drop"))(x)
    return layers.Dense(classes, activation="softmax", name=f"{prefix}probs")(x)


def _seed(keras: Any, dropout: float, batch_norm: bool, classes: int) -> Any:
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    outputs = _seed_tower(keras, inputs, dropout, batch_norm, classes)
    return keras.Model(inputs, outputs, name="seed_bn" if batch_norm else "seed")


def build_seed(keras: Any, dropout: float = 0.0, classes: int = WITH_NOT_A_DIGIT) -> Any:
    """The seed network: conv 5x5x16 -> pool -> conv 5x5x36 -> pool -> fc 128 -> fc 10 (+1: not a digit)."""
    return _seed(keras, dropout, batch_norm=False, classes=classes)


def build_seed_bn(keras: Any, dropout: float = 0.0, classes: int = WITH_NOT_A_DIGIT) -> Any:
    """The seed network with batch norm after every conv and the fc 128 (folded away by the converter)."""
    return _seed(keras, dropout, batch_norm=True, classes=classes)


def build_vgg(keras: Any, dropout: float = 0.0, classes: int = WITH_NOT_A_DIGIT) -> Any:
    """A VGG-style 32-32-64-64 3x3 conv net with batch norm, for the best accuracy."""
    layers = keras.layers
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = inputs
    for filters in (32, 64):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="vgg")


def _strided_tower(keras: Any, inputs: Any, dropout: float, classes: int, prefix: str = "") -> Any:
    layers = keras.layers
    x = inputs
    n = 0
    for filters in (32, 64):  # 28 -> 26 -> 24 -> 12, then 12 -> 10 -> 8 -> 4
        for kernel, stride, padding in ((3, 1, "valid"), (3, 1, "valid"), (5, 2, "same")):
            x = layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                              name=f"{prefix}conv{n}")(x)
            x = layers.BatchNormalization(name=f"{prefix}bn{n}")(x)
            x = layers.ReLU(name=f"{prefix}relu{n}")(x)
            n += 1
        if dropout:
            x = layers.Dropout(dropout, name=f"{prefix}drop{n}")(x)
    x = layers.Conv2D(128, 4, use_bias=False, name=f"{prefix}conv{n}")(x)  # 4x4 -> 1x1
    x = layers.BatchNormalization(name=f"{prefix}bn{n}")(x)
    x = layers.ReLU(name=f"{prefix}relu{n}")(x)
    x = layers.Flatten(name=f"{prefix}flatten")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{prefix}drop")(x)
    return layers.Dense(classes, activation="softmax", name=f"{prefix}probs")(x)


def build_strided(keras: Any, dropout: float = 0.0, classes: int = WITH_NOT_A_DIGIT) -> Any:
    """Two stacks of 3x3 convs that downsample with a learned 5x5 stride-2 conv instead of pooling, then a 4x4
    conv to 128 features (the layout of Chris Deotte's Kaggle MNIST net); batch norm after every conv and
    dropout after each stack during training."""
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    return keras.Model(inputs, _strided_tower(keras, inputs, dropout, classes), name="strided")


def build_strided_pair(keras: Any, dropout: float = 0.0, training: bool = False,
                       classes: int = WITH_NOT_A_DIGIT) -> Any:
    """Two independently initialised ``strided`` networks in one graph whose probabilities are averaged: a
    two-member ensemble. For training (``training=True``) the members are separate outputs, each with its
    own loss, so they learn independently rather than co-adapting to the average."""
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    members = [_strided_tower(keras, inputs, dropout, classes, prefix=f"m{i}_") for i in range(2)]
    if training:
        return keras.Model(inputs, members, name="strided_pair")
    return keras.Model(inputs, keras.layers.Average(name="probs")(members), name="strided_pair")


def build_seed_strided(keras: Any, dropout: float = 0.0, training: bool = False,
                       classes: int = WITH_NOT_A_DIGIT) -> Any:
    """A ``seed-bn`` and a ``strided`` network in one graph whose probabilities are averaged (18.5 M MACs, within
    the 20 M asked of the accurate model): ``digitkit combine`` builds it from the two trained networks. With
    ``training=True`` each member is its own output with its own loss, as in ``strided-pair``."""
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    members = [_seed_tower(keras, inputs, dropout, True, classes, prefix="fast_"),
               _strided_tower(keras, inputs, dropout, classes, prefix="acc_")]
    if training:
        return keras.Model(inputs, members, name="seed_strided")
    return keras.Model(inputs, keras.layers.Average(name="probs")(members), name="seed_strided")


# The architectures whose networks an ensemble holds, in the order of its towers, and each tower's layer-name
# prefix (digitkit combine).
MEMBERS: dict[str, tuple[tuple[str, str], ...]] = {
    "strided-pair": (("strided", "m0_"), ("strided", "m1_")),
    "seed-strided": (("seed-bn", "fast_"), ("strided", "acc_")),
}


def build_tiny(keras: Any, dropout: float = 0.0, classes: int = WITH_NOT_A_DIGIT) -> Any:
    """A microcontroller-class net: conv 3x3x8 -> pool -> conv 3x3x16 -> pool -> fc 10 (~10 k params)."""
    layers = keras.layers
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = inputs
    for filters in (8, 16):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="tiny")


ARCHITECTURES: dict[str, tuple[Callable[..., Any], str]] = {
    "seed": (build_seed, "the seed CNN: conv5x5x16-pool-conv5x5x36-pool-fc128-fc10"),
    "seed-bn": (build_seed_bn, "the seed CNN trained with batch norm, folded away on conversion (the default)"),
    "vgg": (build_vgg, "VGG-style 32-32-64-64 3x3 convs with batch norm, fc128"),
    "strided": (build_strided, "3x3 conv stacks 32-32 / 64-64 with 5x5 stride-2 downsampling, conv4x4x128, BN"),
    "strided-pair": (build_strided_pair, "two strided nets averaged: an ensemble in one graph"),
    "seed-strided": (build_seed_strided, "seed-bn and strided averaged in one graph (digitkit combine)"),
    "tiny": (build_tiny, "microcontroller-class: conv3x3x8-pool-conv3x3x16-pool-fc10"),
}


# Architectures whose training graph differs from the saved one: one output per ensemble member.
MEMBERWISE = frozenset(MEMBERS)


def build_model(arch: str, dropout: float = 0.0, training: bool = False, classes: int = WITH_NOT_A_DIGIT) -> Any:
    """Build the named architecture (TensorFlow/Keras is imported here, lazily). ``training=True`` gives the
    graph to fit: the same weights in the same order, but an ensemble has one output per member.

    Raises:
        ToolkitError: unknown architecture name.
    """
    if arch not in ARCHITECTURES:
        raise ToolkitError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    import keras

    if training and arch in MEMBERWISE:
        return ARCHITECTURES[arch][0](keras, dropout=dropout, training=True, classes=classes)
    return ARCHITECTURES[arch][0](keras, dropout=dropout, classes=classes)


def count_macs(model: Any) -> int:
    """Multiply-accumulates of one forward pass (convolutions and dense layers; the rest is negligible)."""
    macs = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            macs += int(h) * int(w) * kh * kw * int(cin) * int(cout)
        elif kind == "Dense":
            macs += int(layer.input.shape[-1]) * int(layer.units)
    return macs


def describe(arch: str) -> ArchInfo:
    """Parameter count and MACs of a registered architecture."""
    model = build_model(arch)
    return ArchInfo(arch, ARCHITECTURES[arch][1], int(model.count_params()), count_macs(model))
