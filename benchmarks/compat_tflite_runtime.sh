#!/usr/bin/env bash
# Prove a .tflite gives the same predictions in ai-edge-litert (the main .venv) and in tflite-runtime 2.14
# (older Raspberry Pi OS). tflite-runtime 2.14 needs numpy<2, so it gets its own venv: .venv-tflite-runtime.
#
#   benchmarks/compat_tflite_runtime.sh MODEL.tflite [DATA_DIR]
#
# Exit codes: 0 identical predictions · 1 predictions differ · 2 bad usage / the venv could not be built.
set -euo pipefail

MODEL=${1:?usage: $0 MODEL.tflite [DATA_DIR]}
DATA=${2:-${DIGITKIT_DATA:-../shared/data/mnist}}
PYTHON=${PYTHON:-python3}
MAIN_PY=${MAIN_PY:-.venv/bin/python}
COMPAT_VENV=${COMPAT_VENV:-.venv-tflite-runtime}
HERE=$(cd "$(dirname "$0")/.." && pwd)

if [ ! -x "$COMPAT_VENV/bin/python" ] || [ ! -f "$COMPAT_VENV/.installed" ]; then
    echo "creating $COMPAT_VENV (tflite-runtime 2.14, numpy<2)" >&2
    if ! { "$PYTHON" -m venv "$COMPAT_VENV" \
        && "$COMPAT_VENV/bin/python" -m pip install --quiet "tflite-runtime==2.14.0" "numpy<2" "opencv-python-headless<5" \
        && "$COMPAT_VENV/bin/python" -m pip install --quiet --no-deps -e "$HERE"; }; then
        echo "error: could not build $COMPAT_VENV (tflite-runtime 2.14 has wheels for CPython 3.8-3.11 only)" >&2
        exit 2
    fi
    touch "$COMPAT_VENV/.installed"
fi

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# Each backend writes its predicted classes for the whole test set; the runtime reads the images itself.
"$MAIN_PY" -m converters.compat predict "$MODEL" --backend litert --data-dir "$DATA" --out "$OUT/litert.npy"
"$COMPAT_VENV/bin/python" -m converters.compat predict "$MODEL" --backend tflite-runtime --data-dir "$DATA" \
    --out "$OUT/tflite_runtime.npy"
"$MAIN_PY" -m converters.compat compare "$OUT/litert.npy" "$OUT/tflite_runtime.npy"
