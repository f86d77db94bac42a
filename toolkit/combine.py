"""Several trained networks as one ensemble model: their probabilities averaged in one graph.

``digitkit combine A.keras B.keras --arch seed-strided --out C.keras`` copies each member's weights into its
tower of the ensemble architecture (``models.MEMBERS`` says which networks, in which order) and writes the
model with a training record like ``digitkit train``'s, so ``digitkit convert`` holds out the same validation
split the members were trained without. The members must come from ``digitkit train`` with the same split
(seed and validation fraction) and the same outputs; averaging two independently trained networks is the
oldest ensemble there is, and on MNIST it corrects a share of either's errors.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitkit.converters.report import training_record
from digitkit.runtime.fileio import atomic_path, atomic_write_json
from digitkit.toolkit.data import load_mnist, split_validation
from digitkit.toolkit.errors import ToolkitError
from digitkit.toolkit.models import MEMBERS, build_model, count_macs
from digitkit.toolkit.train import TrainConfig, _versions, check_config, sidecar_for
from digitkit.toolkit.twins import make_callable

# What must agree between the members' training records for their average to be measured honestly.
_SAME = ("seed", "val_fraction", "not_a_digit")


@dataclass(frozen=True)
class CombineResult:
    """The ensemble written; ``to_dict`` is its training record (``FILE.json``)."""

    model_path: str
    sidecar_path: str
    arch: str
    params: int
    macs: int
    data_source: str
    data_sha256: str
    val_size: int
    test_size: int
    seed: int
    val_accuracy: float
    test_accuracy: float
    member_val_accuracy: list[float]
    member_test_accuracy: list[float]
    members: list[dict[str, Any]]  # each member's path and its own training record
    versions: dict[str, str]
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _record(path: Path) -> dict[str, Any]:
    record = training_record(path)
    if record is None:
        raise ToolkitError(f"{path}: no training record {sidecar_for(path).name} beside it (or not readable); "
                           "combine networks trained by `digitkit train`")
    if not isinstance(record.get("config"), dict):
        raise ToolkitError(f"{sidecar_for(path)}: not a `digitkit train` record (no config)")
    return record


def combine(members: list[str | os.PathLike[str]], out: str | os.PathLike[str], arch: str = "seed-strided",
            data_dir: str | None = None) -> CombineResult:
    """Write the ensemble of ``members`` (trained .keras files, in ``MEMBERS[arch]``'s order) to ``out``.

    Raises:
        ToolkitError: unknown ensemble, wrong number or kind of members, members trained on different splits,
            missing files or records, unwritable output (exit 2).
    """
    if arch not in MEMBERS:
        raise ToolkitError(f"{arch!r} is not an ensemble architecture; choose one of: {', '.join(MEMBERS)}")
    kinds = [kind for kind, _ in MEMBERS[arch]]
    if len(members) != len(kinds):
        raise ToolkitError(f"{arch} takes {len(kinds)} trained networks ({', '.join(kinds)}), got {len(members)}")
    paths = [Path(m) for m in members]
    for p in paths:
        if not p.is_file():
            raise ToolkitError(f"model file {p} not found")
    out_path = check_config(TrainConfig(out=str(out), arch=arch))
    records = [_record(p) for p in paths]
    for p, record, kind in zip(paths, records, kinds, strict=True):
        if record["config"].get("arch") != kind:
            raise ToolkitError(f"{p} is a {record['config'].get('arch')!r} network; {arch} takes "
                               f"{', '.join(kinds)} in that order")
    for key in _SAME:
        values = {repr(r["config"].get(key)) for r in records}
        if len(values) > 1:
            raise ToolkitError(f"the networks were trained with different {key} ({', '.join(sorted(values))}); "
                               "an ensemble needs one validation split")
    config = records[0]["config"]
    data = load_mnist(data_dir)
    split = split_validation(data.x_train, data.y_train, float(config.get("val_fraction", 0.1)),
                             int(config.get("seed", 0)))

    from digitkit.converters.tflite import load_keras

    loaded = [load_keras(p) for p in paths]
    classes = int(loaded[0].outputs[0].shape[-1])
    if any(int(m.outputs[0].shape[-1]) != classes for m in loaded):
        raise ToolkitError("the networks give different numbers of outputs")
    model = build_model(arch, classes=classes)
    for net, (_, prefix) in zip(loaded, MEMBERS[arch], strict=True):  # each network into its tower, in order
        theirs = [layer for layer in net.layers if layer.weights]
        tower = [layer for layer in model.layers if layer.weights and layer.name.startswith(prefix)]
        shapes = [[tuple(w.shape) for w in layer.get_weights()] for layer in theirs]
        if shapes != [[tuple(w.shape) for w in layer.get_weights()] for layer in tower]:
            raise ToolkitError(f"the networks' weights do not fit {arch}'s towers")
        for mine, their in zip(tower, theirs, strict=True):
            mine.set_weights(their.get_weights())

    def accuracy(net: Any, x: np.ndarray, y: np.ndarray) -> float:
        p = net.predict((x.astype(np.float32) / 255.0)[..., None], batch_size=512, verbose=0)
        return float(np.mean(p.argmax(-1) == y))  # argmax over every output: "not a digit" on a digit is an error

    result = CombineResult(
        model_path=str(out_path), sidecar_path=str(sidecar_for(out_path)), arch=arch,
        params=int(model.count_params()), macs=count_macs(model), data_source=data.source,
        data_sha256=data.sha256, val_size=len(split.x_val), test_size=len(data.x_test),
        seed=int(config.get("seed", 0)),
        val_accuracy=accuracy(model, split.x_val, split.y_val),
        test_accuracy=accuracy(model, data.x_test, data.y_test),
        member_val_accuracy=[accuracy(m, split.x_val, split.y_val) for m in loaded],
        member_test_accuracy=[accuracy(m, data.x_test, data.y_test) for m in loaded],
        members=[{"path": str(p), "record": r} for p, r in zip(paths, records, strict=True)],
        versions=_versions(),
        config={"arch": arch, "members": [str(p) for p in paths], "data_dir": data_dir,
                **{key: config.get(key) for key in _SAME}},
    )
    with atomic_path(out_path) as tmp:
        model.save(tmp)
    atomic_write_json(sidecar_for(out_path), result.to_dict())
    return result


make_callable(__name__)  # digitkit.toolkit.combine(...) calls combine() (see digitkit.toolkit.twins)
