"""Atomic writes: every file digitkit writes goes to a temp file in the target folder, then is renamed.

A kill -9 mid-write leaves either the old file or the new one, never a truncated one; at most a hidden
``.NAME.tmp.PID.*`` temp file stays behind, which the next write of NAME (and ``digitkit pipeline`` for its
whole folder) deletes. The toolkit and the converters import these helpers from here (imports flow
toolkit -> converters -> runtime).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


TEMP_MARK = ".tmp."  # temp files are ".NAME.tmp.PID.RANDOM.SUFFIX": hidden, and named for their target and writer


def sidecar_path(target: str | os.PathLike[str]) -> Path:
    """``m.tflite`` -> ``m.tflite.json``, ``m.keras`` -> ``m.keras.json``: a file's record for people, named after
    the whole file name so records of two files with the same stem (or another tool's ``m.json``) never collide."""
    target = Path(target)
    return target.with_name(target.name + ".json")


def temp_beside(target: str | os.PathLike[str], suffix: str | None = None) -> Path:
    """Create an empty temp file in ``target``'s folder (same suffix unless given), readable like any file;
    the caller renames it onto ``target`` with ``os.replace`` or deletes it.

    The name carries the writer's process id, so the temp files a killed writer left for the same target
    are deleted here first (see :func:`remove_stale_temps`).
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    remove_stale_temps(folder, target.name)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARK}{os.getpid()}.",
                                    suffix=suffix if suffix is not None else target.suffix, dir=folder)
    os.close(fd)
    os.chmod(tmp_name, 0o666 & ~_UMASK)  # mkstemp makes 0600; a model or report should read like any file
    return Path(tmp_name)


def _writer_pid(name: str) -> int | None:
    """The process id in a temp file name made by :func:`temp_beside`, or None if it is not one."""
    if not name.startswith(".") or TEMP_MARK not in name:
        return None
    pid = name.rsplit(TEMP_MARK, 1)[1].split(".", 1)[0]
    return int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike[str], target_name: str | None = None,
                       recursive: bool = False) -> list[Path]:
    """Delete the temp files that writers killed mid-write (kill -9, power cut) left in ``folder``.

    Only files named like :func:`temp_beside`'s (``.NAME.tmp.PID.*``) whose process is gone are removed,
    so a concurrent writer's temp file is left alone. (Folders written at once from several machines or
    PID namespaces could see another host's live temp as stale; its writer then fails, it never corrupts.)

    Args:
        folder: where to look.
        target_name: only the temps of this file name; None = every target's.
        recursive: also look in sub-folders.

    Returns:
        The removed paths.
    """
    folder = Path(folder)
    pattern = f".{glob.escape(target_name)}{TEMP_MARK}*" if target_name else f".*{TEMP_MARK}*"
    removed = []
    try:
        found = list(folder.rglob(pattern) if recursive else folder.glob(pattern))
    except OSError:
        return removed
    for path in found:
        pid = _writer_pid(path.name)
        if pid is None or _alive(pid) or not path.is_file():
            continue
        with contextlib.suppress(FileNotFoundError, PermissionError):
            path.unlink()
            removed.append(path)
    return removed


def is_temp(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a temp file of :func:`temp_beside` (live or stale): never an output to read."""
    return _writer_pid(Path(path).name) is not None


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
        fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _claim(tmp: Path, target: Path) -> bool:
    """Put the finished ``tmp`` at ``target`` unless something is already there; False if it is."""
    try:
        os.link(tmp, target)  # atomic, and fails if the name exists: no window where a file is replaced
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
    # A filesystem without hard links (FAT, some network mounts): reserve the name, then rename onto it.
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        return False
    os.replace(tmp, target)
    return True


def write_new(folder: str | os.PathLike[str], stem: str, suffix: str, write: Callable[[Path], None],
              first: int = 1) -> tuple[Path, int]:
    """Write a new file in ``folder`` without ever replacing one: ``STEM.SUFFIX`` if that name is free, else
    ``STEM-2.SUFFIX``, ``STEM-3.SUFFIX``... (from ``first``).

    ``write(tmp)`` fills a temp file in the folder; it is fsynced, then claimed under the first free name
    atomically, so two writers racing for a name each get their own.

    Returns:
        The path written and the number its name took (1 = no suffix number).

    Raises:
        OSError: the folder is missing or not writable, or ``write`` failed (nothing is left behind).
    """
    folder = Path(folder)
    tmp = temp_beside(folder / f"{stem}{suffix}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        n = max(1, first)
        while True:
            target = folder / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")
            if _claim(tmp, target):
                fsync_dir(folder)
                return target, n
            n += 1
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename in ``folder`` durable across a power cut (best effort: not every OS can fsync a folder)."""
    try:
        fd = os.open(folder if str(folder) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically; return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically; return the target path."""
    return atomic_write_bytes(target, text.encode("utf-8"))


def strict_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None: JSON has no NaN, and Python's ``json`` would
    write one that other readers (``jq``, browsers, Go, Rust) refuse."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def atomic_write_json(target: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented, strict JSON (NaN and infinities as null, a trailing newline) to ``target``
    atomically."""
    return atomic_write_text(target, json.dumps(strict_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")
