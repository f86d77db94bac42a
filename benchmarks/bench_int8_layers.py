"""Why the int8 seed model was no faster than float32 on XNNPACK, and what digitkit.converters.tflite.int8_graph buys.

Times (single image, 1 thread, pinned CPU, interleaved rounds, median) the seed's first layer alone --
conv 5x5, 1 -> 16 channels, 'same', ReLU, on 28x28x1 -- and optionally a whole .keras model, each converted
to float32 and to int8 with and without the int8_graph rewrite (SPACE_TO_DEPTH -> 3x3 conv -> DEPTH_TO_SPACE).

    .venv/bin/python benchmarks/bench_int8_layers.py [--model runs/exp/s0e60.keras] [--cpu 0] [--rounds 10]

Raw interpreter time (set_tensor + invoke + get_tensor), no runtime wrapper: `digitkit bench` adds the
runtime's per-image Python quantize/dequantize on top.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digitkit.converters.tflite import _converter, load_keras, quiet_tf  # noqa: E402


def first_layer() -> object:
    with quiet_tf():
        import keras
    inputs = keras.Input(shape=(28, 28, 1))
    x = keras.layers.Conv2D(16, 5, padding="same")(inputs)
    return keras.Model(inputs, keras.layers.ReLU()(x), name="first_conv")


def tflite(model: object, mode: str, rewrite: bool, calibration: np.ndarray) -> bytes:
    conv = _converter(model, mode, "uint8" if mode == "int8" else "float32",
                      calibration if mode == "int8" else None, rewrite=rewrite)
    if mode == "int8":
        import tensorflow as tf

        conv.inference_output_type = tf.int8  # the first layer has no softmax range for uint8; timing is the same
    with quiet_tf():
        return bytes(conv.convert())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="also time this whole .keras model")
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 256, size=(200, 28, 28), dtype=np.uint8)
    models = {"first conv": first_layer()}
    if args.model:
        models[Path(args.model).name] = load_keras(args.model)
    runners = {}
    for name, model in models.items():
        for label, mode, rewrite in (("float32", "float32", False), ("int8", "int8", False),
                                     ("int8 + int8_graph", "int8", True)):
            interp = Interpreter(model_content=tflite(model, mode, rewrite, calibration), num_threads=1)
            interp.allocate_tensors()
            inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
            x = calibration[..., None].astype(inp["dtype"]) if inp["dtype"] == np.uint8 else \
                (calibration[..., None] / 255.0).astype(np.float32)
            runners[(name, label)] = (interp, inp["index"], out["index"], x)
    samples: dict[tuple[str, str], list[int]] = {key: [] for key in runners}
    keys = list(runners)
    for r in range(args.rounds + 1):  # round 0 is warm-up
        for key in keys if r % 2 else keys[::-1]:
            interp, i_in, i_out, x = runners[key]
            for k in range(200):
                t0 = time.perf_counter_ns()
                interp.set_tensor(i_in, x[k:k + 1])
                interp.invoke()
                interp.get_tensor(i_out)
                if r:
                    samples[key].append(time.perf_counter_ns() - t0)
    for name in models:
        base = np.median(samples[(name, "float32")])
        for label in ("float32", "int8", "int8 + int8_graph"):
            p50 = np.median(samples[(name, label)])
            print(f"{name:20s} {label:18s} p50 {p50 / 1e3:7.1f} us   x float32 {p50 / base:5.2f}")


if __name__ == "__main__":
    main()
