"""Image files -> uint8 arrays, refusing what would hurt before a pixel is decoded.

The header comes first: PNG and JPEG are parsed here (a chunk or marker walk, about a microsecond for a
28x28 PNG), other formats by Pillow, which reads their headers without decoding. Empty files, non-images,
truncated PNGs and pictures whose header claims more than ``max_pixels`` are refused from the header alone.
OpenCV then decodes (2-5x faster than Pillow) and honours EXIF orientation. Pictures with transparency go
through Pillow instead: OpenCV drops the alpha channel when it converts to gray (a transparent background
stored as black would read as ink), and keeps it only with IMREAD_UNCHANGED, which ignores EXIF orientation.
So do formats Pillow knows and OpenCV does not (TGA, ICO, PCX, ...).

Pillow is imported only on those paths, so the common PNG/JPEG path and the start-up time do not pay for it.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from digitkit.runtime.errors import InferenceError

# Pillow's own MAX_IMAGE_PIXELS (a quarter GiB of 24-bit pixels): a 48 MP phone photo passes, a
# decompression bomb does not. Our check replaces Pillow's, which would speak only above twice this.
DEFAULT_MAX_PIXELS = 89_478_485
FORMATS_HINT = "PNG, JPEG, BMP, WebP or TIFF"
_AGAIN = "copy or export it again"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (C0-CF, except DHT C4, JPG C8 and DAC CC, which share the range).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, read without decoding pixels."""

    format: str  # "PNG", "JPEG", or Pillow's format name
    width: int
    height: int
    alpha: bool  # has or may have transparent pixels (an alpha channel, a tRNS chunk, a transparent colour)

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _png_header(data: bytes) -> ImageHeader:
    """Walk the chunks to IEND: the size and transparency, and a truncated file is caught here (OpenCV
    only says "no image")."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise InferenceError(f"truncated PNG: only {len(data)} bytes, the header is incomplete; {_AGAIN}")
    width, height, _depth, colour_type = struct.unpack_from(">IIBB", data, 16)
    alpha = colour_type in (4, 6)  # gray + alpha, RGBA
    pos, end = 8, len(data)
    while True:
        if pos + 12 > end:
            raise InferenceError(f"truncated PNG: the file stops after {end} bytes, before its end chunk; {_AGAIN}")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if pos + 12 + length > end:
            raise InferenceError(f"truncated PNG: the file stops after {end} bytes, inside its "
                                 f"{kind.decode('latin-1')} chunk of {length} bytes; {_AGAIN}")
        if kind == b"IEND":
            return ImageHeader("PNG", width, height, alpha)
        alpha = alpha or kind == b"tRNS"  # a transparent palette entry or colour key
        pos += 12 + length


def _jpeg_header(data: bytes) -> ImageHeader:
    """Walk the markers to the frame header. Truncated scan data is caught after decoding: OpenCV's
    in-memory decoder refuses it (cv2.imread from a path would grey-fill the rest instead)."""
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:  # fill byte, markers with no length
            pos += 1 if marker == 0xFF else 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or scan data before any frame header
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _JPEG_SOF:
            if pos + 9 > end:
                break
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return ImageHeader("JPEG", width, height, False)
        pos += 2 + length
    if pos + 4 > end:
        raise InferenceError(f"truncated JPEG: the file stops after {end} bytes, before its frame header; {_AGAIN}")
    raise InferenceError(f"corrupt JPEG: no frame header (byte {pos} is not a marker); {_AGAIN}")


def _pillow_open(data: bytes) -> Any:
    """Pillow's lazy open (header only, no pixels decoded), or None if no Pillow plugin knows the format.

    ``Image.open`` refuses anything above twice its own MAX_IMAGE_PIXELS before saying the size, so a
    ``max_pixels`` set higher could never be honoured: the plugin registry is walked the way
    ``Image.open`` walks it, minus that check (``max_pixels`` is checked right after, always).
    """
    from PIL import Image

    Image.init()
    prefix = data[:16]
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        ok = accept(prefix) if accept else True
        if not ok or isinstance(ok, str):  # a str is Pillow's "looks like it, but unsupported" note
            continue
        try:
            return factory(io.BytesIO(data), "")
        except (SyntaxError, IndexError, TypeError, ValueError, struct.error, OSError):
            continue
    return None


def _has_alpha(im: Any) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def read_header(data: bytes) -> ImageHeader | None:
    """The format, size and transparency of an encoded image, without decoding it.

    Returns:
        The header, or None when neither this module nor Pillow knows the format (OpenCV may still).

    Raises:
        InferenceError: an empty file, or a PNG/JPEG whose header or chunks are cut short.
    """
    if not data:
        raise InferenceError(f"empty file (0 bytes): nothing to read; {_AGAIN}")
    if data.startswith(_PNG_SIGNATURE):
        return _png_header(data)
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg_header(data)
    im = _pillow_open(data)
    if im is None:
        return None
    return ImageHeader(im.format or "?", im.width, im.height, _has_alpha(im))


def check_pixels(header: ImageHeader, max_pixels: int) -> None:
    """Refuse a picture whose header claims more than ``max_pixels`` (before decoding it)."""
    if header.pixels > max_pixels:
        raise InferenceError(f"header says {header.width}x{header.height} = {header.pixels / 1e6:.1f} MP, above the "
                             f"--max-pixels limit of {max_pixels / 1e6:.1f} MP; not decoded (raise --max-pixels "
                             "if the picture is genuine)")


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

    im = _pillow_open(data)
    try:
        im = ImageOps.exif_transpose(im)  # OpenCV honours EXIF orientation on the opaque path: so must this one
        px = np.asarray(im.convert("RGBA" if color else "LA"))  # same luma weights as OpenCV's gray
    except (OSError, ValueError, SyntaxError) as exc:  # e.g. "image file is truncated"
        raise InferenceError(f"corrupt {im.format} data ({exc}); {_AGAIN}") from None
    alpha = px[..., -1]
    paper = _paper_for(cv2.cvtColor(px, cv2.COLOR_RGBA2GRAY) if color else px[..., 0], alpha)
    a = alpha.astype(np.uint16)[..., None]
    ink = px[..., 2::-1] if color else px[..., :1]  # BGR, like OpenCV
    flat = (ink * a + paper * (255 - a) + 127) // 255  # at most 255 * 255 + 127: fits uint16
    return np.ascontiguousarray(flat.astype(np.uint8) if color else flat[..., 0].astype(np.uint8))


def _why_undecodable(data: bytes, header: ImageHeader | None) -> str:
    if header is None:
        return f"not an image: the file starts with {data[:8]!r}, no {FORMATS_HINT} header; is it the right file?"
    if header.format == "JPEG" and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
        return f"truncated JPEG: no end-of-image marker, the image data stops after {len(data)} bytes; {_AGAIN}"
    return f"corrupt {header.format} data: OpenCV cannot decode it; {_AGAIN}"


def decode_image(data: bytes, color: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image as uint8 gray (or BGR when ``color``), transparency flattened onto paper.

    Raises:
        InferenceError: empty, not an image, truncated or corrupt, or above ``max_pixels``.
    """
    header = read_header(data)
    if header is not None:
        check_pixels(header, max_pixels)
        if header.alpha:
            return _pillow_decode(data, color)
    # A format only OpenCV knows gets no header check here: OpenCV's own limit (2^30 pixels) applies.
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE)
    if img is None:
        if header is not None and header.format not in ("PNG", "JPEG"):  # TGA, ICO, PCX...: Pillow reads them
            return _pillow_decode(data, color)  # (or says what is wrong with the file)
        raise InferenceError(_why_undecodable(data, header))
    return img


def read_image(path: str | os.PathLike[str], color: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load an image file as uint8 gray, or BGR when ``color`` (see :func:`decode_image`).

    Raises:
        InferenceError: ``"<path>: <what is wrong>; <what to do>"``.
        OSError: the file cannot be opened (missing, a folder, no permission).
    """
    with open(path, "rb") as fh:  # bytes + imdecode: non-ASCII paths work, unlike cv2.imread
        data = fh.read()
    try:
        return decode_image(data, color, max_pixels)
    except InferenceError as exc:
        raise InferenceError(f"{os.fspath(path)}: {exc}") from None
