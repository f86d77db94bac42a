"""From a photo (or an MNIST tile) to the model's input: grayscale, polarity, illumination correction,
threshold, and the MNIST normalisation of one digit (20x20 box, 28x28 canvas, centre of mass centred).

Everything here works on uint8 arrays with numpy and OpenCV only. The "ink map" convention: 0 is paper,
larger is more ink, whatever the polarity and lighting of the original picture.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from digitkit.runtime.errors import InferenceError
from digitkit.runtime.resize import enlarge, resize, shrink

# The background is estimated at a reduced size: lighting varies slowly, and the big morphological
# kernels that erase the ink would be slow at full resolution.
_BG_SIDE = 128
# Fraction of the reduced image's longest side used as the closing kernel: wider than any pen stroke
# (even a digit that fills the frame has strokes ~1/8 of its height), narrower than the paper.
_BG_KERNEL_FRACTION = 0.28
NOISE_SIDE = 200  # the paper's noise is measured on a sample of at most this many rows and columns


@dataclass(frozen=True)
class InkMap:
    """The result of :func:`ink_map`: ink strength per pixel (0 = paper) and what was decided on the way."""

    ink: np.ndarray  # uint8 (H, W)
    polarity: str  # "dark-on-light" or "light-on-dark": what the picture was
    threshold: int  # ink level separating strokes from paper (Otsu, floored by the noise and min_contrast)
    noise: float  # robust standard deviation of the paper's ink level
    floor: int = 1  # the threshold's floor (noise and min_contrast): Otsu's part may be redone on less ink
    # When the noise set the floor above Otsu's threshold: the lower floor the paper's local noise allows
    # (see :func:`_local_noise`), for a second reading of a picture the first found no digit in.
    faint_floor: int | None = None
    otsu: int = 0

    def fainter(self) -> InkMap | None:
        """The same ink map thresholded at ``faint_floor`` (None when there is no lower floor)."""
        if self.faint_floor is None:
            return None
        return dataclasses.replace(self, threshold=max(self.otsu, self.faint_floor), floor=self.faint_floor,
                                   faint_floor=None)

    def to_dict(self) -> dict[str, object]:
        return {"polarity": self.polarity, "threshold": self.threshold, "noise": round(self.noise, 2)}


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any image OpenCV or numpy hands over (gray, BGR, BGRA; uint8, uint16, other integers, bool, or float
    0-1 or 0-255) -> uint8 gray of the same height and width.

    Floats are scaled by 255 when their finite values are all <= 1; NaN and -inf count as black, +inf as
    white. Other integers are clipped to 0-255; a bool mask is 0 / 255.

    Raises:
        InferenceError: the array is not an image (wrong rank, empty, more than 4 channels, or not numbers).
    """
    img = np.asarray(image)
    if img.dtype.kind not in "buif":  # complex, str, object, datetime: no pixel values
        raise InferenceError(f"not an image: array of dtype {img.dtype} (shape {img.shape}); "
                             "expected numbers (uint8, uint16, float, ...)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.size == 0 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise InferenceError(f"not an image: array of shape {img.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    if img.dtype != np.uint8:
        img = _to_uint8(img)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(img)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.bool_:
        return img.astype(np.uint8) * np.uint8(255)
    if img.dtype.kind == "f":
        # In the array's own float type, so a float32 picture converts exactly as before; clipped before
        # scaling so huge values cannot overflow to inf.
        finite = np.isfinite(img)
        if finite.all():
            x, top = img, float(img.max())
        else:  # NaN and -inf are black, +inf white, and none of them decides the scale
            x = np.where(finite, img, np.where(img > 0, img.dtype.type(np.inf), img.dtype.type(0)))
            top = float(img[finite].max(initial=0))
        x = np.clip(x, 0, 1) * img.dtype.type(255) if top <= 1.0 else np.clip(x, 0, 255)
        return x.astype(np.uint8)
    if img.dtype == np.uint16:
        return np.clip(img / 257.0, 0, 255).astype(np.uint8)
    return np.clip(img, 0, 255).astype(np.uint8)


def require_gray(gray: np.ndarray, who: str, allow_empty: bool = False) -> None:
    """Refuse, with the fix, what the uint8 gray functions would otherwise fail on deep inside OpenCV.

    Raises:
        InferenceError: ``gray`` is not a 2-D uint8 array (or is empty, unless ``allow_empty``).
    """
    if (not isinstance(gray, np.ndarray) or gray.dtype != np.uint8 or gray.ndim != 2
            or (gray.size == 0 and not allow_empty)):
        shape = getattr(gray, "shape", None)
        dtype = getattr(gray, "dtype", type(gray).__name__)
        raise InferenceError(f"{who} needs a {'' if allow_empty else 'non-empty '}uint8 (H, W) gray image, "
                             f"got {dtype} of shape {shape}; "
                             "convert it with digitkit.runtime.preprocess.to_gray")


def _odd(n: float) -> int:
    k = max(3, int(round(n)))
    return k if k % 2 else k + 1


def _small(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    f = min(1.0, _BG_SIDE / max(h, w))
    if f >= 1.0:
        return gray
    return shrink(gray, (max(1, round(w * f)), max(1, round(h * f))))


def _median(small: np.ndarray, k: int) -> np.ndarray:
    """``cv2.medianBlur`` with the picture mirrored, not replicated, past its edges.

    Replicated (OpenCV's only choice), a dark frame round the picture (a sudoku cell's border, a vignette)
    fills half of every window along it and becomes the "local median" there: the paper beside it then reads
    as a light outlier (a dark 7 in a bordered cell was taken for light ink on dark paper).
    """
    r = k // 2
    padded = cv2.copyMakeBorder(small, r, r, r, r, cv2.BORDER_REFLECT_101)
    return cv2.medianBlur(padded, k)[r:r + small.shape[0], r:r + small.shape[1]]


def detect_polarity(gray: np.ndarray) -> str:
    """"dark-on-light" (ink on paper) or "light-on-dark" (chalk, MNIST): ink is the minority that stands
    out from its neighbourhood, so compare how far dark and light outliers reach from a local median."""
    require_gray(gray, "detect_polarity")
    small = _small(gray)
    k = min(_odd(max(small.shape) * 0.4), 255)
    diff = small.astype(np.int16) - _median(small, k)
    sigma = 1.4826 * float(np.median(np.abs(diff))) + 1.0
    t = 3.0 * sigma
    dark = float(np.clip(-diff - t, 0, None).sum())
    light = float(np.clip(diff - t, 0, None).sum())
    return "dark-on-light" if dark >= light else "light-on-dark"


def ink_map(gray: np.ndarray, polarity: str = "auto", min_contrast: int = 40) -> InkMap:
    """Ink strength per pixel with the lighting divided out, plus a threshold for segmentation.

    The picture is turned into dark ink on light paper, the paper's brightness is estimated by a
    morphological closing at low resolution (which erases strokes narrower than the kernel), and each
    pixel's ink is how much darker it is than its paper, relative to that paper (so a shadow or a
    vignette changes nothing). The threshold is Otsu's, but never below the paper noise or
    ``min_contrast`` (out of 255), so a blank page yields nothing.

    Args:
        gray: uint8 grayscale image.
        polarity: "auto", "dark-on-light" or "light-on-dark".
        min_contrast: the faintest ink accepted, as (paper - ink) / paper * 255.

    Raises:
        InferenceError: ``gray`` is not a non-empty uint8 (H, W) array, or ``polarity`` is unknown.
    """
    require_gray(gray, "ink_map")
    if polarity == "auto":
        polarity = detect_polarity(gray)
    elif polarity not in ("dark-on-light", "light-on-dark"):
        raise InferenceError(f"unknown polarity {polarity!r}; use auto, dark-on-light or light-on-dark")
    paper = gray if polarity == "dark-on-light" else cv2.bitwise_not(gray)
    h, w = paper.shape
    small = _small(paper)
    k = _odd(max(small.shape) * _BG_KERNEL_FRACTION)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    # Closing (max then min filter) erases dark strokes narrower than k but overshoots within k of the
    # picture's edges when the light falls off there; a median (ink is the minority of any window) does
    # not, yet a very bold digit could pull it down. Where they disagree the paper is the darker one.
    closed = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel)
    median = cv2.medianBlur(small, min(k, 255))
    bg_small = cv2.blur(np.minimum(closed, median), (k // 2 | 1, k // 2 | 1), borderType=cv2.BORDER_REPLICATE)
    bg = bg_small if bg_small.shape == paper.shape else enlarge(bg_small, (w, h))
    # Relative to the paper, floored at 16 only as the divisor: on near-black "paper" a floor in the
    # difference too would turn every pixel darker than 16 into ink (a black page into one big digit).
    bgf = bg.astype(np.float32)
    signed = (bgf - paper.astype(np.float32)) * (255.0 / np.maximum(bgf, 16.0))
    ink = np.clip(signed, 0, 255).astype(np.uint8)

    # The paper's noise, from the signed residual (the clipped one is mostly zeros).
    # At most NOISE_SIDE rows and columns of it (every k-th, k rounded up: rounded down, a 640 x 480 camera frame
    # kept 240 x 214 and its two medians cost 1 ms of the frame's 6.5).
    sample = signed[:: -(-h // NOISE_SIDE), :: -(-w // NOISE_SIDE)]
    med = float(np.median(sample))
    noise = 1.4826 * float(np.median(np.abs(sample - med)))
    otsu, _ = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    floor = int(max(med + 6.0 * noise, min_contrast, 1))  # ink 0 is paper, whatever min_contrast
    faint = None
    if floor > max(otsu, min_contrast):  # the noise set the threshold: how low could the paper allow?
        # (Only then: the local median costs 3 ms on a camera frame.) Not used at once: on a clean picture
        # the lower threshold also joins touching digits and the remains of cell borders, so it is a second
        # try for pictures the first reading finds no digit in (DigitClassifier).
        local = _local_noise(sample)
        lower = int(max(med + 6.0 * local, min_contrast, 1)) if local is not None else floor
        faint = lower if lower < floor else None
    return InkMap(ink=ink, polarity=polarity, threshold=int(max(otsu, floor)), noise=noise, floor=floor,
                  faint_floor=faint, otsu=int(otsu))


def _local_noise(sample: np.ndarray) -> float | None:
    """Robust spread of the paper's residual about its own local median (15 px of a <= 200 px sample).

    The spread about the picture's global median also counts where the background estimate is off: next
    to a thick cell border, or inside a big digit whose dense strokes pull the estimate down, the paper
    reads brighter than "paper" by 30-70 levels, and a 6-sigma floor built on that spread lands above a
    faint pen's whole stroke. About a local median those slow errors cancel; grain, JPEG blotches and
    sensor noise (finer than the window) stay in.
    """
    # Half-level steps around 128 so the uint8 median filter (the only one with big windows) can run.
    u = np.clip(sample * 2.0 + 128.0, 0, 255).astype(np.uint8)
    if min(u.shape) < 15:  # too small for the window: no second opinion
        return None
    diff = u.astype(np.int16) - cv2.medianBlur(u, 15).astype(np.int16)
    return 1.4826 * float(np.median(np.abs(diff))) / 2.0


def mnist_normalise(ink: np.ndarray, size: int = 28, box: int = 20) -> np.ndarray:
    """One digit's ink crop (0 = background) -> a ``size`` x ``size`` uint8 tile the MNIST way.

    The ink's bounding box is scaled (aspect kept) so its longer side is ``box`` pixels, placed on a
    black canvas, and shifted by whole pixels so its centre of mass is at the centre. An empty or
    all-zero crop gives a black tile.
    """
    require_gray(ink, "mnist_normalise", allow_empty=True)
    ys, xs = np.nonzero(ink)
    out = np.zeros((size, size), dtype=np.uint8)
    if len(xs) == 0:
        return out
    crop = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = crop.shape
    f = box / max(h, w)
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    digit = resize(crop, (nw, nh))  # area average to shrink, bilinear to enlarge; the same on every CPU
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = digit
    m = cv2.moments(out, binaryImage=False)
    if m["m00"] > 0:
        dx = int(round(size / 2 - m["m10"] / m["m00"]))
        dy = int(round(size / 2 - m["m01"] / m["m00"]))
        if dx or dy:
            shift = np.float32([[1, 0, dx], [0, 1, dy]])
            out = cv2.warpAffine(out, shift, (size, size), flags=cv2.INTER_NEAREST, borderValue=0)
    return out


def as_mnist_tile(gray: np.ndarray, blank_contrast: int = 40) -> np.ndarray | None:
    """A picture that already is a digit tile (the model's input size) -> white-on-black tile, untouched
    when it is MNIST already; ``None`` when it is blank.

    Polarity comes from the border (MNIST's 4-pixel frame is background); a non-black background is
    subtracted and the ink stretched to 0-255, which leaves a real MNIST tile (and its inverse) exactly
    as it was.
    """
    require_gray(gray, "as_mnist_tile")
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    tile = cv2.bitwise_not(gray) if float(np.mean(border)) > 127 else gray
    bg = int(np.median(np.concatenate([tile[0], tile[-1], tile[1:-1, 0], tile[1:-1, -1]])))
    top = int(tile.max())
    if top - bg < max(blank_contrast, 1):  # no contrast at all is blank even when blank_contrast is 0
        return None
    if bg == 0 and top == 255:
        return tile
    stretched = (tile.astype(np.float32) - bg) * (255.0 / (top - bg))
    return np.clip(stretched, 0, 255).astype(np.uint8)


def stroke_width(tile: np.ndarray, box: int = 20) -> float:
    """The widest stroke of a normalised tile as a fraction of the 20-pixel digit box.

    A pen stroke is thin: across the 10 000 MNIST test digits this is 0.19 at the median and at most
    0.60; a filled disk, square or blob measures 0.6-1.0. Used to reject shapes that are not writing.
    """
    solid = (tile >= 128).astype(np.uint8)
    if not solid.any():
        return 0.0
    return 2.0 * float(cv2.distanceTransform(solid, cv2.DIST_L2, 3).max()) / box
