"""What an image file's header says, read without decoding a pixel.

PNG and JPEG are parsed here (a chunk or marker walk, about a microsecond for a 28x28 PNG), other formats by
Pillow, which reads their headers without decoding. Empty files, non-images, truncated PNGs, unsupported
pixel formats and pictures whose header claims more than ``max_pixels`` are refused from the header alone.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

from digitkit.runtime.errors import InferenceError

# Pillow's own MAX_IMAGE_PIXELS (a quarter GiB of 24-bit pixels): a 48 MP phone photo passes, a
# decompression bomb does not. Our check replaces Pillow's, which would speak only above twice this.
DEFAULT_MAX_PIXELS = 89_478_485
FORMATS_HINT = "PNG, JPEG, BMP, WebP or TIFF"
AGAIN = "copy or export it again"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (C0-CF, except DHT C4, JPG C8 and DAC CC, which share the range).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Pillow modes with no meaning as 8-bit ink on paper: OpenCV cannot decode them and Pillow would clip the
# values (a float TIFF in 0..1 reads as a blank page).
_UNSUPPORTED_MODES = {("F", None): "32-bit float", ("I", "TIFF"): "32-bit integer"}  # (mode, format or any)


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, read without decoding pixels."""

    format: str  # "PNG", "JPEG", or Pillow's format name
    width: int
    height: int
    alpha: bool  # has or may have transparent pixels (an alpha channel, a tRNS chunk, a transparent colour)
    pages: int = 1  # frames or pages in the file (a multi-page TIFF, an animated PNG/GIF/WebP); page 1 is read

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _png_header(data: bytes) -> ImageHeader:
    """Walk the chunks to IEND: the size and transparency, and a truncated file is caught here (OpenCV
    only says "no image")."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise InferenceError(f"truncated PNG: only {len(data)} bytes, the header is incomplete; {AGAIN}")
    width, height, _depth, colour_type = struct.unpack_from(">IIBB", data, 16)
    alpha = colour_type in (4, 6)  # gray + alpha, RGBA
    pages = 1
    pos, end = 8, len(data)
    while True:
        if pos + 12 > end:
            raise InferenceError(f"truncated PNG: the file stops after {end} bytes, before its end chunk; {AGAIN}")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if pos + 12 + length > end:
            raise InferenceError(f"truncated PNG: the file stops after {end} bytes, inside its "
                                 f"{kind.decode('latin-1')} chunk of {length} bytes; {AGAIN}")
        if kind == b"IEND":
            return ImageHeader("PNG", width, height, alpha, pages)
        alpha = alpha or kind == b"tRNS"  # a transparent palette entry or colour key
        if kind == b"acTL" and length >= 4:  # an animated PNG: its frame count
            pages = max(1, struct.unpack_from(">I", data, pos + 8)[0])
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
        raise InferenceError(f"truncated JPEG: the file stops after {end} bytes, before its frame header; {AGAIN}")
    raise InferenceError(f"corrupt JPEG: no frame header (byte {pos} is not a marker); {AGAIN}")


def pillow_open(data: bytes) -> Any:
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
        raise InferenceError(f"empty file (0 bytes): nothing to read; {AGAIN}")
    if data.startswith(_PNG_SIGNATURE):
        return _png_header(data)
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg_header(data)
    im = pillow_open(data)
    if im is None:
        return None
    unsupported = _UNSUPPORTED_MODES.get((im.mode, None)) or _UNSUPPORTED_MODES.get((im.mode, im.format))
    if unsupported:
        raise InferenceError(f"{unsupported} {im.format} pixels: not a supported pixel format "
                             "(its values would read as a blank page); export it as an 8- or 16-bit picture")
    return ImageHeader(im.format or "?", im.width, im.height, _has_alpha(im), int(getattr(im, "n_frames", 1) or 1))


def check_pixels(header: ImageHeader, max_pixels: int) -> None:
    """Refuse a picture whose header claims more than ``max_pixels`` (before decoding it)."""
    if header.pixels > max_pixels:
        raise InferenceError(f"header says {header.width}x{header.height} = {header.pixels / 1e6:.1f} MP, above the "
                             f"--max-pixels limit of {max_pixels / 1e6:.1f} MP; not decoded (raise --max-pixels "
                             "if the picture is genuine)")
