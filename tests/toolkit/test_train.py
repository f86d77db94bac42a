"""Training: the seed network is exactly the seed, the saved graph is inference-only, runs are deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from digitkit.toolkit.errors import ToolkitError
from digitkit.toolkit.models import ARCHITECTURES, build_model, count_macs, describe
from digitkit.toolkit.train import TrainConfig, train


def test_seed_architecture_is_exactly_the_seed_network() -> None:
    model = build_model("seed")
    convs = [lay for lay in model.layers if type(lay).__name__ == "Conv2D"]
    dense = [lay for lay in model.layers if type(lay).__name__ == "Dense"]
    assert [(c.filters, c.kernel_size) for c in convs] == [(16, (5, 5)), (36, (5, 5))]
    assert [d.units for d in dense] == [128, 11]  # the ten digits and "not a digit"
    flat = next(lay for lay in model.layers if type(lay).__name__ == "Flatten")
    assert flat.output.shape[-1] == 7 * 7 * 36
    assert sum(type(lay).__name__ == "MaxPooling2D" for lay in model.layers) == 2
    # 5*5*1*16+16 + 5*5*16*36+36 + 1764*128+128 + 128*11+11
    assert model.count_params() == 416 + 14436 + 225920 + 1419
    assert count_macs(model) == 28 * 28 * 25 * 16 + 14 * 14 * 25 * 16 * 36 + 1764 * 128 + 1408
    digits_only = build_model("seed", classes=10)
    assert digits_only.output_shape[-1] == 10 and digits_only.count_params() == 416 + 14436 + 225920 + 1290


def test_every_registered_arch_builds_with_28x28x1_in_and_11_out() -> None:
    infos = {name: describe(name) for name in ARCHITECTURES}
    assert len(infos) >= 2
    for name in ARCHITECTURES:
        model = build_model(name)
        assert tuple(model.input_shape[1:]) == (28, 28, 1) and model.output_shape[-1] == 11
    assert infos["tiny"].macs < infos["seed"].macs < infos["vgg"].macs


def test_unknown_arch_is_a_clear_error() -> None:
    with pytest.raises(ToolkitError, match="unknown architecture 'resnet'; choose one of: seed"):
        build_model("resnet")


def test_bad_out_suffix_refused_before_training(tmp_path: Path, synth_data_dir: Path) -> None:
    with pytest.raises(ToolkitError, match=r"must end in \.keras"):
        train(out=str(tmp_path / "m.h5"), data_dir=str(synth_data_dir), epochs=1)
    assert not list(tmp_path.iterdir())


def test_saved_graph_has_no_training_only_layers_and_sidecar_is_complete(tiny_keras_model: Path) -> None:
    import keras

    model = keras.models.load_model(tiny_keras_model, compile=False)
    kinds = {type(lay).__name__ for lay in model.layers}
    assert not kinds & {"Dropout", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomGaussianBlur"}, kinds
    side = json.loads(tiny_keras_model.with_name(tiny_keras_model.name + ".json").read_text())
    for key in ("arch", "params", "macs", "data_source", "data_sha256", "train_size", "val_size", "test_size",
                "epochs", "seed", "val_accuracy", "test_accuracy", "train_seconds", "versions", "not_a_digit"):
        assert key in side, key
    # 1 200 digits split 90/10 (stratified), plus 0.25 non-digit tiles per digit in each split
    assert 1.2 * 1200 <= side["train_size"] + side["val_size"] <= 1.3 * 1200
    assert abs(side["val_size"] - 1.25 * 120) <= 15
    nad = side["not_a_digit"]
    assert nad["index"] == 10 and nad["held_out_family"] == "script"
    assert "script" not in nad["val_rejected_by_family"] and 0.0 <= nad["held_out_rejected"] <= 1.0
    assert side["test_size"] == 300 and side["params"] == model.count_params()
    assert "tensorflow" in side["versions"]
    # Learnable synthetic digits: two short epochs must be far above chance.
    assert side["test_accuracy"] > 0.8


def test_training_is_deterministic_for_a_seed(tmp_path: Path, synth_data_dir: Path) -> None:
    import keras

    kwargs = dict(arch="tiny", epochs=1, batch_size=64, data_dir=str(synth_data_dir), seed=5)
    a = train(TrainConfig(out=str(tmp_path / "a.keras"), **kwargs))  # augmentation on: seeded too
    b = train(TrainConfig(out=str(tmp_path / "b.keras"), **kwargs))
    wa = keras.models.load_model(tmp_path / "a.keras").get_weights()
    wb = keras.models.load_model(tmp_path / "b.keras").get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))
    assert a.test_accuracy == b.test_accuracy
    # No temp files left behind by the atomic writes.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.keras", "a.keras.json", "b.keras", "b.keras.json"]


def test_training_itself_raises_no_keras_warning(tmp_path: Path, synth_data_dir: Path) -> None:
    # The CLI silences library warnings (digitkit.logs), but training should not cause the ones it can avoid:
    # fit's default shuffle=True on a tf.data.Dataset made Keras warn on every run.
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        train(TrainConfig(out=str(tmp_path / "m.keras"), arch="tiny", epochs=1, batch_size=64,
                          data_dir=str(synth_data_dir)))
    assert not [w for w in seen if "shuffle" in str(w.message)]


def test_an_ensemble_trains_its_members_separately_and_saves_their_average(tmp_path: Path,
                                                                           synth_data_dir: Path) -> None:
    import keras

    fit = build_model("strided-pair", dropout=0.3, training=True)
    assert len(fit.outputs) == 2  # one loss per member while fitting
    logs: list[dict[str, float]] = []
    result = train(out=str(tmp_path / "pair.keras"), arch="strided-pair", epochs=1, batch_size=64,
                   data_dir=str(synth_data_dir), on_epoch=lambda e, n, lg: logs.append(lg))
    members = [lg for k, lg in logs[0].items() if k.startswith("val_m") and k.endswith("_probs_accuracy")]
    assert len(members) == 2 and logs[0]["val_accuracy"] == pytest.approx(sum(members) / 2)
    saved = keras.models.load_model(tmp_path / "pair.keras", compile=False)
    assert saved.output_shape == (None, 11) and not any(type(lay).__name__ == "Dropout" for lay in saved.layers)
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    each = keras.Model(saved.inputs, [saved.get_layer("m0_probs").output, saved.get_layer("m1_probs").output])
    a, b = (np.asarray(t) for t in each(x))
    assert not np.allclose(a, b)  # two independently initialised members
    np.testing.assert_allclose(np.asarray(saved(x)), (a + b) / 2, atol=1e-6)
    assert result.macs == 2 * describe("strided").macs


def _augmented(images: np.ndarray, config: TrainConfig, epochs: int = 1) -> list[np.ndarray]:
    """The training pipeline's images for ``epochs`` passes (shuffled: compare them as sets)."""
    import keras
    import tensorflow as tf

    from digitkit.toolkit.train import _dataset

    ds = _dataset(tf, keras, images, np.zeros(len(images), np.int64), config, training=True, classes=11)
    return [np.concatenate([a.numpy() for a, _ in ds])[..., 0] for _ in range(epochs)]


def _strokes(n: int = 256) -> np.ndarray:
    """Tiles of three 2-pixel pen strokes each, hard-edged like MNIST's."""
    import cv2

    rng = np.random.default_rng(0)
    tiles = np.zeros((n, 28, 28), np.uint8)
    for tile in tiles:
        for _ in range(3):
            x0, y0, x1, y1 = (int(v) for v in rng.integers(6, 22, 4))
            cv2.line(tile, (x0, y0), (x1, y1), 255, 2)
    return tiles


def test_augmentation_without_rotation_zoom_or_shift_returns_the_tiles_unchanged() -> None:
    tiles = _strokes()
    config = TrainConfig(rotation_deg=0.0, zoom=0.0, shift=0.0, blur_fraction=0.0, batch_size=len(tiles))
    out = _augmented(tiles, config)[0]
    # shuffled within the batch: compare as a multiset of tiles
    key = lambda a: sorted(map(bytes, np.round(a * 255).astype(np.uint8)))  # noqa: E731
    assert key(out) == key(tiles.astype(np.float32) / 255.0)


def test_augmentation_resamples_once_so_strokes_stay_as_sharp_as_the_tiles() -> None:
    # Rotation, zoom and shift as three Keras layers in a row interpolate three times: the mean horizontal
    # gradient fell to 0.90 of these tiles' (0.85 on 4 096 MNIST training tiles); one resampling keeps 0.96 (0.95).
    tiles = _strokes()
    sharp = lambda a: float(np.abs(np.diff(a.astype(np.float32), axis=2)).mean())  # noqa: E731
    out = _augmented(tiles, TrainConfig(batch_size=64, blur_fraction=0.0))[0]
    assert sharp(out) >= 0.94 * sharp(tiles / 255.0)
    # the blur is its own step: on every tile it softens them below that
    blurred = _augmented(tiles, TrainConfig(batch_size=64, blur_fraction=1.0))[0]
    assert sharp(blurred) < 0.93 * sharp(out)  # 0.88 measured (sigma 0.3-1.0)


def test_augmentation_moves_tiles_within_the_configured_shift_and_differs_each_epoch() -> None:
    tiles = _strokes()
    config = TrainConfig(rotation_deg=0.0, zoom=0.0, shift=0.1, blur_fraction=0.0, batch_size=len(tiles), seed=3)
    first, second = _augmented(tiles, config, epochs=2)
    ys, xs = np.mgrid[:28, :28]
    com = lambda a: np.stack([(a * xs).sum((1, 2)), (a * ys).sum((1, 2))], 1) / a.sum((1, 2))[:, None]  # noqa: E731
    before, after = com(tiles / 255.0), com(first)  # shuffled: compare the distributions, not tile by tile
    assert np.abs(after.mean(0) - before.mean(0)).max() < 0.5  # shifts are centred on zero
    # an independent shift, uniform in +-2.8 px, adds its variance 2.8**2 / 3 = 2.6 px^2 on each axis
    added = after.var(0) - before.var(0)
    assert np.all((1.5 < added) & (added < 4.0)), added
    # compared as multisets of tiles (the pipeline shuffles): new draws every epoch, the same run for the same seed
    columns = lambda a: np.sort(a.reshape(len(a), -1), axis=0)  # noqa: E731
    assert not np.allclose(columns(first), columns(second), atol=1e-3)
    assert np.array_equal(columns(first), columns(_augmented(tiles, config)[0]))


def test_not_a_digit_calibration_lowers_that_logit_to_the_validation_operating_point() -> None:
    import keras

    from digitkit.toolkit.train import calibrate_not_a_digit

    rng = np.random.default_rng(0)
    digits = rng.integers(0, 256, (1000, 28, 28)).astype(np.uint8)

    def model(bias10: float) -> keras.Model:
        inputs = keras.Input((28, 28, 1))
        m = keras.Model(inputs, keras.layers.Dense(11, activation="softmax", name="probs")(
            keras.layers.Flatten()(inputs)))
        kernel = rng.normal(0, 0.02, (784, 11)).astype(np.float32)
        m.layers[-1].set_weights([kernel, np.r_[np.zeros(10), bias10].astype(np.float32)])
        return m

    def called(m: keras.Model) -> int:
        return int(np.sum(m.predict((digits / 255.0)[..., None], verbose=0).argmax(1) == 10))

    eager = model(2.0)  # answers "not a digit" on most digits
    assert called(eager) > 500
    record = calibrate_not_a_digit(eager, digits, keep=0.99)
    assert record is not None and record["logit_shift"] < 0
    assert called(eager) <= 10 and called(eager) == record["val_digits_called_not_a_digit_after"]
    assert record["val_digits_called_not_a_digit_before"] > 500
    # a model already within the operating point is left as it is: the logit is never raised
    shy = model(-20.0)
    before = shy.layers[-1].get_weights()[1].copy()
    assert calibrate_not_a_digit(shy, digits, keep=0.99)["logit_shift"] == 0.0
    assert np.array_equal(shy.layers[-1].get_weights()[1], before)
