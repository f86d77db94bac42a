"""Helper for compat_tflite_runtime.sh: the same .tflite, the same images, two interpreter packages.

    compat_predict.py dump-test DATA_DIR OUT.npz          (main venv: test images + labels to one file)
    compat_predict.py predict MODEL IMAGES.npz BACKEND OUT.npy   (either venv: runtime only, no TensorFlow)
    compat_predict.py compare IMAGES.npz A.npy B.npy      (exit 0 identical classes, 1 otherwise)

Plain argparse and numpy: the tflite-runtime venv has the runtime package installed without its CLI deps.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def dump_test(data_dir: str, out: str) -> None:
    from digitkit.toolkit.data import load_mnist

    data = load_mnist(data_dir)
    np.savez(out, x=data.x_test, y=data.y_test)


def predict(model: str, images: str, backend: str, out: str) -> None:
    from digitkit.runtime.interpreter import TFLiteModel

    x = np.load(images)["x"]
    m = TFLiteModel(model, backend=backend)
    np.save(out, m.predict_proba(x))
    print(f"{m.backend}: {len(x)} images through {model}")


def compare(images: str, a: str, b: str) -> int:
    y = np.load(images)["y"]
    pa, pb = np.load(a), np.load(b)
    ca, cb = pa.argmax(axis=-1), pb.argmax(axis=-1)
    same = int(np.sum(ca == cb))
    differ = int(np.sum(np.any(pa != pb, axis=-1)))
    print(f"identical predictions: {same}/{len(ca)}; images with any probability difference: {differ} "
          f"(max {np.abs(pa - pb).max():.3g}); "
          f"accuracy litert {np.mean(ca == y):.4%}, tflite-runtime {np.mean(cb == y):.4%}")
    return 0 if same == len(ca) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("dump-test")
    p.add_argument("data_dir")
    p.add_argument("out")
    p = sub.add_parser("predict")
    for name in ("model", "images", "backend", "out"):
        p.add_argument(name)
    p = sub.add_parser("compare")
    for name in ("images", "a", "b"):
        p.add_argument(name)
    args = parser.parse_args(argv)
    if args.cmd == "dump-test":
        dump_test(args.data_dir, args.out)
    elif args.cmd == "predict":
        predict(args.model, args.images, args.backend, args.out)
    else:
        return compare(args.images, args.a, args.b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
