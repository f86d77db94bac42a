"""TFLiteModel's fast paths (raw pixels in, table dequantization out) give exactly what the tensors'
own (scale, zero_point) arithmetic gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digitkit.runtime.interpreter import TFLiteModel, load_interpreter_class


def test_fast_paths_equal_the_plain_quantization_arithmetic(tiny_int8_tflite: Path,
                                                             synth_test_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    images = synth_test_arrays[0][:64]
    model = TFLiteModel(tiny_int8_tflite, threads=1)
    assert model._passes_pixels_through()  # uint8 input, scale 1/255, zero point 0

    _, interpreter_cls = load_interpreter_class()
    raw = interpreter_cls(model_path=str(tiny_int8_tflite), num_threads=1)
    inp, out = raw.get_input_details()[0], raw.get_output_details()[0]
    raw.resize_tensor_input(inp["index"], [len(images), 28, 28, 1])
    raw.allocate_tensors()
    scale_in, zero_in = inp["quantization"]
    q = np.clip(np.round(images.astype(np.float32)[..., None] / 255.0 / scale_in + zero_in), 0, 255).astype(np.uint8)
    assert np.array_equal(q[..., 0], images)  # the pass-through really is exact for this model
    raw.set_tensor(inp["index"], q)
    raw.invoke()
    scale_out, zero_out = out["quantization"]
    expected = (raw.get_tensor(out["index"]).astype(np.float32) - zero_out) * np.float32(scale_out)

    got = model.predict_proba(images)
    assert np.array_equal(got, expected)
    # Floats in [0, 1] take the quantizing path and land on the same probabilities.
    assert np.array_equal(model.predict_proba(images.astype(np.float32) / 255.0), expected)
