"""Measure one model in a fresh process, and read what a model file is, for ``digitkit.toolkit.bench``.

``run_isolated`` starts a new interpreter per (model, backend, threads) row, ``python -m
digitkit.toolkit.measure``: the process imports only what that model needs (TensorFlow for .keras, a TFLite
interpreter for .tflite), is pinned before any thread pool exists, and reports its own peak RSS. It is a plain
subprocess, not multiprocessing's spawn, which would re-run the caller's ``__main__`` (a script without a
``if __name__ == "__main__"`` guard would run again in every child).

Peak RSS is read from ``VmHWM`` in ``/proc/self/status``: the high-water mark of this process's own memory map,
which starts afresh at ``exec``. ``getrusage``'s ``ru_maxrss`` does not: Linux carries the parent's high-water
mark at fork into the child across ``exec``, so every row reported the (TensorFlow-sized) parent's peak.
"""

from __future__ import annotations

import os
import pickle
import platform
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from digitkit.errors import DigitkitError, ExitCode
from digitkit.runtime.errors import InferenceError
from digitkit.runtime.interpreter import BACKENDS, load_interpreter_class, open_interpreter, read_embedded
from digitkit.toolkit.errors import ToolkitError


def tflite_mode(path: str | os.PathLike[str], backend: str | None = None) -> str:
    """The quantization mode of a .tflite file: what ``digitkit convert`` embedded in it, else (a model from
    another tool) read from its tensors' dtypes.

    float16: float16 weights; dynamic: int8 weights with float32 activations; int8: integer activations
    (float32 only at the interface, if at all); int16x8: int16 activations; float32 otherwise.
    """
    # Through the runtime's checks: a malformed file must fail here with InferenceError, not crash bench.
    _, interp, data = open_interpreter(path, backend)
    embedded = read_embedded(data, path) or {}
    mode = (embedded.get("conversion") or {}).get("mode")
    if isinstance(mode, str) and mode:
        return mode
    tensors = interp.get_tensor_details()
    kinds = [np.dtype(t["dtype"]) for t in tensors]
    count = {name: sum(k == np.dtype(name) for k in kinds) for name in ("float32", "float16", "int8", "uint8", "int16")}
    if count["float16"]:
        return "float16"
    if count["int16"] and count["int8"]:
        return "int16x8"
    if count["int8"] + count["uint8"] == 0:
        return "float32"
    # Full-integer models keep float32 only for a quantize/dequantize at the interface (<= 2 tensors);
    # dynamic-range models keep every activation and bias in float32.
    return "int8" if count["float32"] <= 2 else "dynamic"


def keras_mode(path: str | os.PathLike[str]) -> str:
    """``float32`` unless the saved config uses a float16/bfloat16 mixed-precision policy (read without TF)."""
    try:
        with zipfile.ZipFile(path) as zf:
            text = zf.read("config.json").decode("utf-8", "replace")
    except (zipfile.BadZipFile, KeyError, OSError):
        raise ToolkitError(f"{path}: not a readable Keras model (not a .keras zip archive)") from None
    if "mixed_bfloat16" in text:
        return "bfloat16"
    return "float16" if "mixed_float16" in text else "float32"


def installed_backends() -> list[str]:
    """The TFLite interpreters importable here, in preference order."""
    found = []
    for name in BACKENDS:
        try:
            load_interpreter_class(name)
        except InferenceError:
            continue
        found.append(name)
    return found


THROUGHPUT_PASSES = 3


@dataclass(frozen=True)
class Job:
    """One row to measure: a model, its backend and thread count, the timing settings and the images."""

    path: str
    format: str
    backend: str
    threads: int
    pin_cpu: tuple[int, ...] | None
    runs: int
    warmup: int
    batch_size: int
    images: np.ndarray


def _status_mb(field: str) -> float | None:
    """``VmHWM`` / ``VmRSS`` of this process from /proc/self/status, in MB (None where there is no /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """This process's own peak RSS (see the module docstring for why not ru_maxrss, the fallback elsewhere)."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_mb() -> float:
    """This process's resident memory now."""
    now = _status_mb("VmRSS")
    return now if now is not None else _peak_rss_mb()


def measure(job: Job) -> dict[str, Any]:
    """Runs in a fresh process (:func:`run_isolated`): load, time single images, time a batched pass, read
    peak RSS."""
    if job.pin_cpu:
        os.sched_setaffinity(0, set(job.pin_cpu))  # before any thread pool exists, so all of them inherit it
    images = job.images
    if job.format == "keras":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(job.threads)  # must precede the first op
        tf.config.threading.set_inter_op_parallelism_threads(job.threads)
        from digitkit.toolkit.evaluate import load_keras_model

        x = (images.astype(np.float32) / 255.0)[..., None]
        base = _rss_mb()
        start = time.perf_counter_ns()
        model = load_keras_model(job.path)
        load_ns = time.perf_counter_ns() - start

        def single(i: int) -> Any:
            return model(x[i:i + 1], training=False)

        def batched() -> np.ndarray:
            return np.concatenate([np.asarray(model(x[s:s + job.batch_size], training=False))
                                   for s in range(0, len(x), job.batch_size)])
    else:
        from digitkit.runtime.interpreter import TFLiteModel

        base = _rss_mb()
        start = time.perf_counter_ns()
        tfl = TFLiteModel(job.path, backend=job.backend, threads=job.threads)
        load_ns = time.perf_counter_ns() - start

        def single(i: int) -> Any:
            return tfl.predict_proba(images[i:i + 1])

        def batched() -> np.ndarray:
            return tfl.predict_proba(images, batch_size=job.batch_size)

    n = len(images)
    for i in range(job.warmup):
        single(i % n)
    samples = np.empty(job.runs, dtype=np.int64)
    for i in range(job.runs):
        t0 = time.perf_counter_ns()
        single(i % n)
        samples[i] = time.perf_counter_ns() - t0
    batched_warm = images[: min(n, job.batch_size)]  # one batch so the batch-shaped buffers exist
    (tfl.predict_proba(batched_warm, batch_size=job.batch_size) if job.format == "tflite"
     else model(x[: len(batched_warm)], training=False))
    # The median of THROUGHPUT_PASSES passes over the images: one pass is at the mercy of a busy neighbour.
    passes = []
    for _ in range(THROUGHPUT_PASSES):
        t0 = time.perf_counter_ns()
        probs = batched()
        passes.append(time.perf_counter_ns() - t0)
    batch_ns = int(np.median(passes))
    peak = _peak_rss_mb()
    return {"load_ns": load_ns, "samples_ns": samples, "batch_ns": batch_ns, "cpus": sorted(os.sched_getaffinity(0)),
            "predictions": probs.argmax(axis=-1).astype(np.uint8), "peak_rss_mb": peak, "base_rss_mb": base}


def run_isolated(job: Job) -> dict[str, Any]:
    """Measure ``job`` in a new ``python -m digitkit.toolkit.measure`` process and return its figures.

    Raises:
        ToolkitError: the process died (exit 1); the child's own DigitkitError (e.g. an unloadable model) as is.
    """
    with tempfile.TemporaryDirectory(prefix="digitkit-bench-") as folder:
        result_path = Path(folder) / "result.pickle"
        # The child's stdout goes to our stderr: stdout carries only the promised output (JSON under --json).
        done = subprocess.run([sys.executable, "-m", "digitkit.toolkit.measure", str(result_path)],
                              input=pickle.dumps(job), stdout=subprocess.PIPE, check=False)
        if done.stdout:
            sys.stderr.write(done.stdout.decode("utf-8", "replace"))
        try:
            outcome = pickle.loads(result_path.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError):
            outcome = None
    if isinstance(outcome, DigitkitError):
        raise outcome
    if done.returncode != 0 or not isinstance(outcome, dict):
        raise ToolkitError(f"{job.path}: the benchmark process died ({job.backend}, {job.threads} threads, exit "
                           f"{done.returncode}); run it alone with --debug to see why",
                           exit_code=ExitCode.SOME_FAILED)
    return outcome


def _child(result_path: str) -> int:
    """The measuring process: a pickled Job on stdin, the figures (or a DigitkitError) pickled to ``result_path``."""
    from digitkit.logs import quiet_libraries

    quiet_libraries()
    job = pickle.loads(sys.stdin.buffer.read())
    try:
        outcome: Any = measure(job)
    except DigitkitError as exc:
        outcome = exc
    Path(result_path).write_bytes(pickle.dumps(outcome))
    return 0


def environment(formats: set[str]) -> dict[str, Any]:
    env: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                           "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                           "python": platform.python_version(), "numpy": np.__version__}
    for dist in ("ai-edge-litert", "tflite-runtime") + (("tensorflow", "keras") if "keras" in formats else ()):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return env


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
