#!/usr/bin/env bash
# Prove a .tflite gives the same predictions in ai-edge-litert (the main .venv) and in tflite-runtime 2.14
# (older Raspberry Pi OS) on the whole test set. tflite-runtime 2.14 needs numpy<2 (so opencv 4.x), which
# the main venv cannot have, so it gets its own venv, built on first use: .venv-tflite-runtime.
#
#   benchmarks/compat_tflite_runtime.sh MODEL.tflite [DATA_DIR]      (run from the repository root)
#
# Exit codes: 0 identical predictions · 1 predictions differ · 2 bad usage or the venv could not be built.
set -euo pipefail

MODEL=${1:-}
DATA=${2:-${DIGITKIT_DATA:-../shared/data/mnist}}
PYTHON=${PYTHON:-python3}
MAIN_PY=${MAIN_PY:-.venv/bin/python}
COMPAT_VENV=${COMPAT_VENV:-.venv-tflite-runtime}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if [ -z "$MODEL" ] || [ ! -f "$MODEL" ]; then
    echo "error: model ${MODEL:-(none)} not found; usage: $0 MODEL.tflite [DATA_DIR] (make one with digitkit convert)" >&2
    exit 2
fi

if [ ! -f "$COMPAT_VENV/.installed-v2" ]; then
    echo "building $COMPAT_VENV: tflite-runtime 2.14, numpy<2, opencv-python-headless<5, pillow, digitkit --no-deps" >&2
    rm -rf "$COMPAT_VENV"
    if ! { "$PYTHON" -m venv "$COMPAT_VENV" \
        && "$COMPAT_VENV/bin/python" -m pip install --quiet "tflite-runtime==2.14.0" "numpy<2" "opencv-python-headless<5" "pillow>=13.0" \
        && "$COMPAT_VENV/bin/python" -m pip install --quiet --no-deps -e "$ROOT"; }; then
        echo "error: could not build $COMPAT_VENV (tflite-runtime 2.14 has wheels for CPython 3.8-3.11 on Linux only)" >&2
        exit 2
    fi
    touch "$COMPAT_VENV/.installed-v2"
fi
"$COMPAT_VENV/bin/python" -c "import tflite_runtime, numpy; print('tflite-runtime', tflite_runtime.__version__, 'numpy', numpy.__version__)"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
HELPER="$ROOT/benchmarks/compat_predict.py"
"$MAIN_PY" "$HELPER" dump-test "$DATA" "$WORK/test.npz"
"$MAIN_PY" "$HELPER" predict "$MODEL" "$WORK/test.npz" litert "$WORK/litert.npy"
"$COMPAT_VENV/bin/python" "$HELPER" predict "$MODEL" "$WORK/test.npz" tflite-runtime "$WORK/tflite_runtime.npy"
"$MAIN_PY" "$HELPER" compare "$WORK/test.npz" "$WORK/litert.npy" "$WORK/tflite_runtime.npy"
