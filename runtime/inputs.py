"""What ``digitkit classify PATH...`` reads: files, folders and glob patterns -> image paths, lazily.

Walking is iterative (a folder nested 1 100 deep is no deeper a recursion than a flat one) and lists one
folder at a time, so memory does not grow with the number of files. Folders are walked without following
symlinked sub-folders; a glob follows them as :func:`glob.glob` does, but enters each real folder at most
once, so a symlink loop (``loop/self -> .``) is reported once instead of growing without bound. A path or
folder that cannot be reached (no permission) is that input's own error, never the whole run's.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from digitkit.runtime.errors import InferenceError
from digitkit.runtime.fileio import is_temp

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm")


@dataclass(frozen=True)
class ReadError:
    """An input that could not be read (missing, not an image, ...); the run goes on."""

    path: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "error": self.error}


def _split_glob(pattern: str) -> tuple[str, list[str]]:
    """``"photos/2024/**/*.png"`` -> ("photos/2024", ["**", "*.png"]): the folder before the first
    wildcard, and the pattern's components after it."""
    parts = pattern.split(os.sep)
    first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = os.sep.join(parts[:first])
    if not root and pattern.startswith(os.sep):
        root = os.sep
    return root, [p for p in parts[first:] if p]


def _advance(states: frozenset[int], name: str, parts: list[str], is_dir: bool) -> frozenset[int]:
    """The pattern positions reached after matching one path component ``name`` (``**`` = any folders)."""
    out: set[int] = set()
    for i in _closure(states, parts):
        if i >= len(parts):
            continue
        part = parts[i]
        hidden_ok = not name.startswith(".") or part.startswith(".")  # like glob: "*" skips dot-files
        if part == "**":
            if is_dir and hidden_ok:
                out.add(i)  # "**" swallows this folder and may swallow more
        elif hidden_ok and fnmatchcase(name, part):
            out.add(i + 1)
    return frozenset(out)


def _closure(states: frozenset[int], parts: list[str]) -> frozenset[int]:
    """Add the positions after each ``**`` (it may match no folder at all)."""
    out = set(states)
    for i in sorted(states):
        while i < len(parts) and parts[i] == "**":
            i += 1
            out.add(i)
    return frozenset(out)


def _walk(root: str, parts: list[str] | None) -> Iterator[str | ReadError]:
    """Image files under ``root`` in sorted-path order (``parts``: a glob's components to match, or None for
    every image file, not following symlinked folders)."""
    follow = parts is not None
    start = frozenset([0])
    seen: set[tuple[int, int]] = set()  # real folders entered (glob mode): each at most once
    stack: list[tuple[str, Iterator[str], frozenset[int], frozenset[tuple[int, int]]]] = []

    def enter(folder: str, states: frozenset[int], ancestors: frozenset[tuple[int, int]]) -> ReadError | None:
        try:
            st = os.stat(folder or ".")
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                return ReadError(folder, "symlink loop: this folder leads back to one that contains it; not "
                                         "followed")
            if key in seen:
                return None  # reached by a second symlink: its files are read once, from the first path
            seen.add(key)
            with os.scandir(folder or ".") as it:
                # "sub/" sorts like the paths inside it would: "a.png" < "a/x.png", as in sorted(rglob(...)).
                names = sorted(e.name + "/" if e.is_dir(follow_symlinks=follow) else e.name for e in it)
        except OSError as exc:  # a folder we may not list: say so, go on with the rest
            return ReadError(folder, f"cannot list this folder: {exc.strerror or exc}")
        stack.append((folder, iter(names), states, ancestors | {key}))
        return None

    problem = enter(root, start, frozenset())
    if problem is not None:
        yield problem
    while stack:
        folder, names, states, ancestors = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            continue
        is_dir = name.endswith("/")
        name = name.rstrip("/")
        path = os.path.join(folder, name) if folder else name
        if parts is not None:
            reached = _advance(states, name, parts, is_dir)
            if not reached:
                continue
            if is_dir:
                if any(i < len(parts) for i in _closure(reached, parts)):
                    problem = enter(path, reached, ancestors)
                    if problem is not None:
                        yield problem
                continue
            if len(parts) not in _closure(reached, parts) or is_temp(name) or not os.path.isfile(path):
                continue
            yield path
        elif is_dir:
            problem = enter(path, start, ancestors)
            if problem is not None:
                yield problem
        elif (os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not is_temp(name)  # a killed writer's leftover
              and os.path.isfile(path)):
            yield path


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> Iterator[str | ReadError]:
    """Files, folders (recursively: files with an image suffix, sorted) and glob patterns -> file paths,
    lazily: memory does not grow with the number of files.

    A path that does not exist or cannot be reached, a glob or folder that holds no image, a folder that
    cannot be listed and a symlink loop each become a :class:`ReadError`; the rest are still yielded.
    """
    for raw in paths:
        text = os.fspath(raw)
        try:
            mode = os.stat(text).st_mode
        except (FileNotFoundError, NotADirectoryError):
            mode = None
        except OSError as exc:  # e.g. a file inside a folder we may not enter
            yield ReadError(text, f"cannot reach it: {exc.strerror or exc}")
            continue
        if mode is not None and stat.S_ISDIR(mode):
            found = False
            for item in _walk(text, None):
                found = found or isinstance(item, str)
                yield item
            if not found:
                yield ReadError(text, f"no images ({', '.join(IMAGE_SUFFIXES[:5])}, ...) in folder")
        elif mode is not None:
            yield text  # not a regular file (a FIFO, a device)? load_image says so, without opening it for long
        elif glob.has_magic(text):
            root, parts = _split_glob(text)
            found = False
            for item in _walk(root, parts):
                found = found or isinstance(item, str)
                yield item
            if not found:
                yield ReadError(text, "no file matches this pattern")
        else:
            yield ReadError(text, "no such file or folder")


def _inside(path: str, folder: str) -> bool:
    return path == folder or os.path.commonpath([path, folder]) == folder


def check_output_folder(out: str | os.PathLike[str], paths: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse an output folder the inputs would read, or whose files could be inputs.

    ``out`` may not be an input folder or inside one (the next run would read the copies as photos), nor
    the folder of an input file, nor a folder a glob pattern can reach.

    Raises:
        InferenceError: (exit 2) naming the input and the output folder.
    """
    target = os.path.realpath(out)
    why = "; choose a folder outside the inputs"
    for raw in paths:
        text = os.fspath(raw)
        if os.path.isdir(text):
            if _inside(target, os.path.realpath(text)):
                raise InferenceError(f"--save-annotated {os.fspath(out)} is inside the input folder {text}: the "
                                     f"annotated copies would be read as inputs by the next run{why}")
        elif os.path.exists(text):
            if target in (os.path.realpath(os.path.dirname(os.path.abspath(text))),
                          os.path.dirname(os.path.realpath(text))):
                raise InferenceError(f"--save-annotated {os.fspath(out)} is the folder of the input {text}: an "
                                     f"annotated copy would sit beside (and be read as) the photo{why}")
        elif glob.has_magic(text):
            root, parts = _split_glob(text)
            base = os.path.realpath(root or ".")
            if not _inside(target, base):
                continue
            states = frozenset([0])
            rel = os.path.relpath(target, base)
            for name in ([] if rel == "." else rel.split(os.sep)):
                states = _advance(states, name, parts, is_dir=True)
            if any(i < len(parts) for i in _closure(states, parts)):
                raise InferenceError(f"--save-annotated {os.fspath(out)} is a folder the pattern {text} reads: "
                                     f"the annotated copies would be read as inputs{why}")
