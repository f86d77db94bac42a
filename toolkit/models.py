"""The registered architectures. Each builder returns a plain Keras model: (28, 28, 1) floats in [0, 1] in,
10 softmax probabilities out. Dropout is a training-only argument: the saved inference graph is rebuilt
with ``dropout=0`` so no regularisation layer ends up in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolkit.errors import ToolkitError

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


@dataclass(frozen=True)
class ArchInfo:
    """What ``digitkit models`` prints for one architecture."""

    name: str
    description: str
    params: int
    macs: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "params": self.params, "macs": self.macs}


def _seed(keras: Any, dropout: float, batch_norm: bool) -> Any:
    layers = keras.layers
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = inputs
    for filters in (16, 36):
        x = layers.Conv2D(filters, 5, padding="same", use_bias=not batch_norm)(x)
        if batch_norm:
            x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)  # 7 * 7 * 36 = 1764
    x = layers.Dense(128, use_bias=not batch_norm)(x)
    if batch_norm:
        x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="seed_bn" if batch_norm else "seed")


def build_seed(keras: Any, dropout: float = 0.0) -> Any:
    """The seed network: conv 5x5x16 -> pool -> conv 5x5x36 -> pool -> fc 128 -> fc 10."""
    return _seed(keras, dropout, batch_norm=False)


def build_seed_bn(keras: Any, dropout: float = 0.0) -> Any:
    """The seed network with batch norm after every conv and the fc 128 (folded away by the converter)."""
    return _seed(keras, dropout, batch_norm=True)


def build_vgg(keras: Any, dropout: float = 0.0) -> Any:
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
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="vgg")


def build_tiny(keras: Any, dropout: float = 0.0) -> Any:
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
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="tiny")


ARCHITECTURES: dict[str, tuple[Callable[..., Any], str]] = {
    "seed": (build_seed, "the seed CNN: conv5x5x16-pool-conv5x5x36-pool-fc128-fc10"),
    "seed-bn": (build_seed_bn, "the seed CNN with batch norm"),
    "vgg": (build_vgg, "VGG-style 32-32-64-64 3x3 convs with batch norm, fc128"),
    "tiny": (build_tiny, "microcontroller-class: conv3x3x8-pool-conv3x3x16-pool-fc10"),
}


def build_model(arch: str, dropout: float = 0.0) -> Any:
    """Build the named architecture (TensorFlow/Keras is imported here, lazily).

    Raises:
        ToolkitError: unknown architecture name.
    """
    if arch not in ARCHITECTURES:
        raise ToolkitError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    import keras

    return ARCHITECTURES[arch][0](keras, dropout=dropout)


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
