"""Keep third-party chatter off the user's terminal: TensorFlow/absl/oneDNN/CUDA start-up lines, LiteRT's
"Created TensorFlow Lite XNNPACK delegate", Keras UserWarnings.

Some of those lines are written by C++ before absl's logging is initialised, so no environment variable
silences them; :func:`filtered_stderr` therefore routes file descriptor 2 through a pipe for the whole command
and forwards every line that is not such chatter (``error: ...`` lines, tracebacks) as it arrives. Child
processes inherit the pipe, so their chatter is dropped too. ``DIGITKIT_LIBRARY_LOGS=1`` turns all this off.
This module uses only the standard library: the runtime-only install imports it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator

# Set before TensorFlow is imported (it is imported lazily, inside the functions that need it).
ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow's C++ INFO/WARNING/ERROR log lines
    "ABSL_MIN_LOG_LEVEL": "3",
    "GRPC_VERBOSITY": "ERROR",
}

# One pattern per kind of line a library prints on its own (anchored at the start of a line, bytes).
NOISE = re.compile(rb"|".join([
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    rb"[IWE]\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] ",  # absl/glog: I0000 00:00:1796.05 123 file.cc:12] ...
    rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] [\w./-]+:\d+\] ",  # older TensorFlow C++ log format
    rb"INFO: (Created TensorFlow Lite|Initialized TensorFlow Lite|TfLite)",  # LiteRT
    rb"To enable the following instructions: ",  # the second line of TF's cpu_feature_guard message
    rb"WARNING:tensorflow:|WARNING:absl:",  # Python-side loggers routed to stderr
]))


def quiet_libraries() -> None:
    """Set the libraries' log-level variables (without overriding the user's) and drop their Python warnings.

    Call before TensorFlow or LiteRT is imported. Does nothing when ``DIGITKIT_LIBRARY_LOGS=1``.
    """
    if os.environ.get("DIGITKIT_LIBRARY_LOGS") == "1":
        return
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    for module in ("keras", "tensorflow", "absl", "google.protobuf", "ml_dtypes"):
        warnings.filterwarnings("ignore", module=module)


def _forward(read_fd: int, write_fd: int) -> None:
    """Copy lines from ``read_fd`` to ``write_fd`` until EOF, dropping library chatter."""
    pending = b""
    with open(read_fd, "rb", buffering=0, closefd=True) as src:
        while chunk := src.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not NOISE.match(line))
            if out:
                os.write(write_fd, out)
    if pending and not NOISE.match(pending):
        os.write(write_fd, pending)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Route fd 2 through :data:`NOISE` for the block; everything else reaches the real stderr unchanged."""
    if os.environ.get("DIGITKIT_LIBRARY_LOGS") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_fd, write_fd = os.pipe()
    except OSError:  # no fd 2 (a daemon) or out of descriptors: run unfiltered rather than not at all
        yield
        return
    thread = threading.Thread(target=_forward, args=(read_fd, saved), name="digitkit-stderr", daemon=True)
    thread.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end held here; the reader sees EOF and drains
        thread.join(timeout=2.0)  # a child still holding the pipe must not hang the exit
        os.close(saved)
