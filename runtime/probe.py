"""Load a model's bytes in a throw-away child process, so a crash or a hang happens there, not here; and
remember on disk which bytes passed, so a custom model pays the child once (see :mod:`digitkit.runtime.modelcheck`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from digitkit.runtime.errors import InferenceError

PROBE_TIMEOUT_S = 30.0


# Runs in the child: only the interpreter and numpy, nothing of digitkit (so it works wherever the runtime
# does). Loads, allocates, then invokes at every batch size TFLiteModel.predict_proba pads to (powers of
# two up to its default 256): a float model from the fuzzer corrupted the heap at batch 8 but not at 1 or 2.
# Batches 1 and 2 also get all-max inputs, the rest zeros.
_PROBE = r"""
import sys
import numpy as np
interpreter_cls = __import__(sys.argv[1], fromlist=["Interpreter"]).Interpreter
data = sys.stdin.buffer.read()
try:
    interp = interpreter_cls(model_content=data, num_threads=1)
    interp.allocate_tensors()
    for batch in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        first = interp.get_input_details()[0]
        if len(first["shape"]) >= 1:
            interp.resize_tensor_input(first["index"], [batch, *first["shape"][1:]])
        interp.allocate_tensors()
        for fill in ("min", "max") if batch <= 2 else ("min",):
            for d in interp.get_input_details():
                dtype = np.dtype(d["dtype"])
                value = 0 if fill == "min" else (np.iinfo(dtype).max if dtype.kind in "iu" else 1)
                interp.set_tensor(d["index"], np.full(d["shape"], value, dtype))
            interp.invoke()
            for d in interp.get_output_details():
                interp.get_tensor(d["index"])
except Exception as exc:
    sys.stdout.write((str(exc).strip().splitlines() or [type(exc).__name__])[0][:200])
    sys.exit(3)
"""

def probe_timeout() -> float:
    """Seconds the child may take: ``$DIGITKIT_PROBE_TIMEOUT`` if set, else :data:`PROBE_TIMEOUT_S`. Emulated
    arm64 (``make test-pi``) starts Python 10-50 times slower, and a busy machine slower still.

    Raises:
        InferenceError: the variable is not a positive number of seconds.
    """
    env = os.environ.get("DIGITKIT_PROBE_TIMEOUT", "").strip()
    if not env:
        return PROBE_TIMEOUT_S
    try:
        value = float(env)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise InferenceError(f"DIGITKIT_PROBE_TIMEOUT={env!r} is not a positive number of seconds; "
                             "unset it for the default 30")
    return value


def probe(data: bytes, module: str, timeout: float | None = None) -> str:
    """Load and run ``data`` in a child process with interpreter module ``module``, for at most ``timeout``
    seconds (default: :func:`probe_timeout`).

    Returns:
        "" if the child loaded, allocated and invoked it; else why not (its error, or the signal that
        killed it, or the timeout).
    """
    timeout = probe_timeout() if timeout is None else timeout
    try:
        done = subprocess.run([sys.executable, "-P", "-c", _PROBE, module], input=data, capture_output=True,
                              timeout=timeout, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return f"loading it did not finish within {timeout:g} s"
    except OSError as exc:  # cannot start a process at all: refuse rather than risk the native load in-process
        return f"could not start the model check ({exc})"
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return f"the interpreter crashed on it ({name})"
    if done.returncode:
        return done.stdout.decode("utf-8", "replace").strip() or f"the check exited with {done.returncode}"
    return ""


def cache_dir() -> Path | None:
    """Where passed probes are remembered across runs: ``$DIGITKIT_CACHE_DIR`` (``off`` or empty: nowhere),
    else ``$XDG_CACHE_HOME/digitkit`` or ``~/.cache/digitkit``."""
    env = os.environ.get("DIGITKIT_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "off") else Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "digitkit"


def marker(digest: str, module: str, exists: bool) -> bool:
    """Check for (``exists=True``) or leave (``exists=False``) an empty file saying these bytes passed the
    probe with this build of the interpreter, so the next run of a custom model skips the ~0.2 s child.
    Anyone who can write there can also replace the installed interpreter, so it trusts nothing new."""
    root = cache_dir()
    mod = sys.modules.get(module)
    if root is None or mod is None or not getattr(mod, "__file__", None):
        return False
    try:
        st = os.stat(mod.__file__)  # type: ignore[arg-type]
        path = root / "checked-models" / f"{digest}.{module}.{st.st_size}-{st.st_mtime_ns}"
        if exists:
            return path.is_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:  # a read-only or full disk only costs the next run a probe
        return False
    return True


