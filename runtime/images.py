"""Image files -> uint8 arrays, refusing what would hurt before a pixel is decoded.

The header comes first (:mod:`digitkit.runtime.headers`): empty files, non-images, truncated PNGs,
unsupported pixel formats and pictures whose header claims more than ``max_pixels`` are refused from it.
OpenCV then decodes (2-5x faster than Pillow) and honours EXIF orientation. Pictures with transparency go
through Pillow instead: OpenCV drops the alpha channel when it converts to gray (a transparent background
stored as black would read as ink), and keeps it only with IMREAD_UNCHANGED, which ignores EXIF orientation.
So do formats Pillow knows and OpenCV does not (TGA, ICO, PCX, ...).

Pillow is imported only on those paths, so the common PNG/JPEG path and the start-up time do not pay for it.

Before any of that, :func:`load_image` opens only regular files (a FIFO or a device named ``x.png`` would
block or never end) and refuses a file larger than any picture of ``max_pixels`` could be, by its size.
libjpeg reports corrupt scan data only as a warning on stderr (the picture is then part grey, and reads
as other digits): that warning is caught and the file refused. Float TIFFs (no meaning as ink on paper)
are refused; a multi-page file is read at its first page and says so.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from digitkit.runtime.errors import InferenceError
from digitkit.runtime.headers import (  # noqa: F401  (DEFAULT_MAX_PIXELS, FORMATS_HINT: re-exported)
    AGAIN,
    DEFAULT_MAX_PIXELS,
    FORMATS_HINT,
    ImageHeader,
    check_pixels,
    pillow_open,
    read_header,
)

# The largest file a picture of N pixels can honestly be: 8 bytes a pixel (16-bit RGBA, uncompressed) plus
# one PNG filter byte per row (a 1-pixel-wide picture: one per pixel), plus room for metadata (EXIF, ICC).
_BYTES_PER_PIXEL = 9
_METADATA_BYTES = 64 << 20


def _paper_for(gray: np.ndarray, alpha: np.ndarray) -> int:
    """The gray (0-255) that transparent pixels become: paper, never ink.

    Mostly opaque (a photo with transparent corners): the picture's own paper, its median gray.
    Mostly transparent (a drawing on nothing): whatever contrasts with the drawn pixels, so dark ink
    lands on white and white ink (drawn for a dark theme) on black.
    """
    step = max(1, int(np.sqrt(gray.size / 1e6)))  # statistics from at most ~1 M pixels
    gray, alpha = gray[::step, ::step], alpha[::step, ::step]
    opaque = alpha > 127
    if opaque.mean() >= 0.5:
        return int(np.median(gray[opaque]))
    drawn = float((gray * alpha.astype(np.float64)).sum()) / max(float(alpha.sum(dtype=np.float64)), 1.0)
    return 255 if drawn < 128 else 0


def _pillow_decode(data: bytes, color: bool) -> np.ndarray:
    """Decode with Pillow: pictures with transparency (flattened onto paper), and formats OpenCV lacks.

    uint8 and uint16 arrays only: a transparent 48 MP picture must not become gigabytes of floats.
    """
    from PIL import ImageOps

    im = pillow_open(data)
    if im is None:  # Pillow refuses some files OpenCV reads (a bad CRC in a text chunk, a zTXt over 1 MB)
        px = _opencv_with_alpha(data, color)
    else:
        try:
            im = ImageOps.exif_transpose(im)  # OpenCV honours EXIF orientation on the opaque path: so must this one
            px = np.asarray(im.convert("RGBA" if color else "LA"))  # same luma weights as OpenCV's gray
        except (OSError, ValueError, SyntaxError) as exc:  # e.g. "image file is truncated"
            raise InferenceError(f"corrupt {im.format} data ({exc}); {AGAIN}") from None
    alpha = px[..., -1]
    paper = _paper_for(cv2.cvtColor(px, cv2.COLOR_RGBA2GRAY) if color else px[..., 0], alpha)
    a = alpha.astype(np.uint16)[..., None]
    ink = px[..., 2::-1] if color else px[..., :1]  # BGR, like OpenCV
    flat = (ink * a + paper * (255 - a) + 127) // 255  # at most 255 * 255 + 127: fits uint16
    return np.ascontiguousarray(flat.astype(np.uint8) if color else flat[..., 0].astype(np.uint8))


def _opencv_with_alpha(data: bytes, color: bool) -> np.ndarray:
    """RGBA (or gray + alpha) pixels decoded by OpenCV, for the transparent files Pillow refuses."""
    img, _ = _imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InferenceError(f"corrupt image data: neither Pillow nor OpenCV can decode it; {AGAIN}")
    if img.dtype != np.uint8:  # 16-bit: keep the high byte
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] in (1, 3):  # no alpha after all: opaque
        bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.shape[2] == 1 else img
        img = np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)])
    rgba = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    if color:
        return rgba
    return np.dstack([cv2.cvtColor(rgba, cv2.COLOR_RGBA2GRAY), rgba[..., 3]])


# libjpeg prints its warnings ("Corrupt JPEG data: ...") on the process's stderr (fd 2), not through Python.
# Around each JPEG decode fd 2 points at a scratch file, read back afterwards: a warning becomes the file's
# error when it says the scan data is damaged (libjpeg then fills the rest with grey), other lines (an odd JFIF
# revision, a thumbnail size) are passed on as before. The redirection is process-wide, so JPEG decodes take
# turns (one lock; other formats decode in parallel as before); text another thread writes to stderr in that
# window is passed on too, after the decode.
_CAPTURE_LOCK = threading.Lock()
_capture: Any = None
_CAPTURE_MAX = 4096  # bytes of warnings kept; libjpeg can warn once per corrupt segment
# libjpeg's warnings that mean pixels are missing or wrong (JWRN_HIT_MARKER, _JPEG_EOF, _HUFF_BAD_CODE,
# _MUST_RESYNC, _ARITH_BAD_CODE, _NOT_SEQUENTIAL, _BOGUS_PROGRESSION); "bad ICC marker" only loses a profile.
_JPEG_DAMAGE = ("Corrupt JPEG data", "Premature end of JPEG file", "Invalid SOS parameters",
                "Inconsistent progression sequence")


def _imdecode(data: bytes, flags: int, capture: bool = True) -> tuple[np.ndarray | None, str]:
    """``cv2.imdecode`` plus (when ``capture``) whatever the native decoders printed on stderr meanwhile."""
    global _capture
    buf = np.frombuffer(data, np.uint8)
    if not capture:
        return cv2.imdecode(buf, flags), ""
    with _CAPTURE_LOCK:
        try:
            if _capture is None:
                _capture = tempfile.TemporaryFile()
            fd = _capture.fileno()
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no fd 2 (a daemon), or no temp folder: decode plainly
            return cv2.imdecode(buf, flags), ""
        try:
            os.dup2(fd, 2)
            img = cv2.imdecode(buf, flags)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        os.lseek(fd, 0, os.SEEK_SET)
        said = os.read(fd, _CAPTURE_MAX).decode("utf-8", "replace")
    return img, said


def _why_undecodable(data: bytes, header: ImageHeader | None) -> str:
    if header is None:
        return f"not an image: the file starts with {data[:8]!r}, no {FORMATS_HINT} header; is it the right file?"
    if header.format == "JPEG" and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        return f"truncated JPEG: no end-of-image marker, the image data stops after {len(data)} bytes; {AGAIN}"
    return f"corrupt {header.format} data: OpenCV cannot decode it; {AGAIN}"


@dataclass(frozen=True)
class LoadedImage:
    """A decoded picture and how many pages its file has (only the first is decoded)."""

    image: np.ndarray
    pages: int = 1


def decode(data: bytes, color: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode an encoded image as uint8 gray (or BGR when ``color``), transparency flattened onto paper.

    Raises:
        InferenceError: empty, not an image, truncated or corrupt (libjpeg's corrupt-data warnings included),
        an unsupported pixel format (float TIFF), or above ``max_pixels``.
    """
    header = read_header(data)
    pages = header.pages if header is not None else 1
    if header is not None:
        check_pixels(header, max_pixels)
        if header.alpha:
            return LoadedImage(_pillow_decode(data, color), pages)
    # A format only OpenCV knows gets no header check here: OpenCV's own limit (2^30 pixels) applies.
    is_jpeg = header is not None and header.format == "JPEG"
    img, said = _imdecode(data, cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE, capture=is_jpeg)
    damage = [line.strip() for line in said.splitlines() if line.startswith(_JPEG_DAMAGE) and "ICC" not in line]
    if not damage and said.strip():
        os.write(2, said.encode())  # not damage: passed on, as it was before it was captured
    if img is not None and damage:
        raise InferenceError(f"corrupt JPEG data (libjpeg: {damage[0]}); part of the picture is missing, so any "
                             f"digits read from it could be wrong; {AGAIN}")
    if img is None:
        if header is not None and header.format not in ("PNG", "JPEG"):  # TGA, ICO, PCX...: Pillow reads them
            return LoadedImage(_pillow_decode(data, color), pages)  # (or says what is wrong with the file)
        raise InferenceError(_why_undecodable(data, header))
    return LoadedImage(img, pages)


def decode_image(data: bytes, color: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The pixels of :func:`decode` (uint8 gray, or BGR when ``color``)."""
    return decode(data, color, max_pixels).image


def max_file_bytes(max_pixels: int) -> int:
    """The largest file a picture of at most ``max_pixels`` pixels can be (see ``_BYTES_PER_PIXEL``)."""
    return _BYTES_PER_PIXEL * max_pixels + _METADATA_BYTES


_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _read_regular(path: str | os.PathLike[str], max_pixels: int) -> bytes:
    """The bytes of a regular file no larger than an image of ``max_pixels`` could be."""
    # O_NONBLOCK: opening a FIFO nobody writes to would otherwise block forever (no effect on regular files).
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what = next((name for test, name in _NOT_REGULAR if test(st.st_mode)), "not a regular file")
            raise InferenceError(f"{what}, not an image file: only regular files are read")
        limit = max_file_bytes(max_pixels)
        if st.st_size > limit:
            raise InferenceError(f"the file is {st.st_size / 1e6:.0f} MB, more than any picture within the "
                                 f"--max-pixels limit of {max_pixels / 1e6:.1f} MP can be ({limit / 1e6:.0f} MB); "
                                 "not read (raise --max-pixels if the picture is genuine)")
        with os.fdopen(fd, "rb", closefd=False) as fh:  # bytes + imdecode: non-ASCII paths work, unlike cv2.imread
            return fh.read(limit + 1)
    finally:
        os.close(fd)


def load_image(path: str | os.PathLike[str], color: bool = False,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Load an image file: its first page as uint8 gray (or BGR when ``color``) and its page count.

    Raises:
        InferenceError: ``"<path>: <what is wrong>; <what to do>"`` (not a regular file, too big, not an
        image, corrupt, ...; see :func:`decode`).
        OSError: the file cannot be opened (missing, no permission).
    """
    try:
        return decode(_read_regular(path, max_pixels), color, max_pixels)
    except InferenceError as exc:
        raise InferenceError(f"{os.fspath(path)}: {exc}") from None


def read_image(path: str | os.PathLike[str], color: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load an image file as uint8 gray, or BGR when ``color`` (see :func:`load_image`)."""
    return load_image(path, color, max_pixels).image
