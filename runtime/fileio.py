"""Atomic writes: every file digitkit writes goes to a temp file in the target folder, then is renamed.

A kill -9 mid-write leaves either the old file or the new one, never a truncated one. The toolkit and
the converters import these helpers from here (imports flow toolkit -> converters -> runtime).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def temp_beside(target: str | os.PathLike[str], suffix: str | None = None) -> Path:
    """Create an empty temp file in ``target``'s folder (same suffix unless given), readable like any file;
    the caller renames it onto ``target`` with ``os.replace`` or deletes it."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp.",
                                    suffix=suffix if suffix is not None else target.suffix, dir=folder)
    os.close(fd)
    os.chmod(tmp_name, 0o666 & ~_UMASK)  # mkstemp makes 0600; a model or report should read like any file
    return Path(tmp_name)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success fsync and rename it onto ``target``.

    Args:
        target: the final path. Its folder must exist and be writable.
        suffix: the temp file's suffix (defaults to the target's, so writers that pick the format from
            the extension, like ``cv2.imwrite`` or Keras ``save``, still work).

    Raises:
        OSError: the folder is missing or not writable. On any exception the temp file is removed and
        the target is left as it was.
    """
    target = Path(target)
    tmp = temp_beside(target, suffix)
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically; return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically; return the target path."""
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON (with a trailing newline) to ``target`` atomically."""
    return atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")
