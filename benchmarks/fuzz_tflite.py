"""Fuzz model loading: mutate valid .tflite files thousands of times and load each mutant in its own
process exactly as the runtime does (``TFLiteModel(path)``, then ``predict_proba`` on a few images).

    python benchmarks/fuzz_tflite.py --count 5000 --seed 0 [--model A.tflite --model B.tflite] [--json out.json]

Mutations: bit flips, byte sets, truncations, chunk deletes/duplicates, splices of two models, and writes of
boundary integers (0, -1, 2**31-1, ...) aimed at the flatbuffer's own offsets, vtable entries, vector lengths,
indices and shapes (located with ``digitkit.runtime.modelcheck``'s walker). Each mutant runs in a forked child with
an alarm, and lands in one outcome class:

    ran        loaded and predicted
    rejected   raised InferenceError (the runtime said no, clearly)
    exception  any other Python exception -- a bug: it must become an InferenceError
    crash      killed by a signal (SIGSEGV, SIGABRT, SIGBUS, ...) -- a bug
    hang       still running after --timeout seconds -- a bug

``--target raw`` loads with the bare interpreter instead (how the runtime behaved before the checks), and
``--target structure`` with only the in-process flatbuffer check before it, to show what each gate is for.
Exit status: 0 when no mutant was an exception, crash or hang, else 1.
"""

from __future__ import annotations

import os

# The parent forks a child per mutant: keep it single-threaded so the fork is clean.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["DIGITKIT_CACHE_DIR"] = "off"  # every mutant is new; remembering them would only fill a folder

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from digitkit.runtime.errors import InferenceError  # noqa: E402
from digitkit.runtime.interpreter import TFLiteModel, load_interpreter_class  # noqa: E402
from digitkit.runtime.modelcheck import verify_structure  # noqa: E402

SHIPPED = REPO / "runtime" / "models" / "digitkit_seed_int8.tflite"
FLOAT_CANDIDATE = REPO / "runs" / "final" / "float32.tflite"
OUTCOMES = ("ran", "rejected", "exception", "crash", "hang")
BAD = ("exception", "crash", "hang")
EXIT = {0: "ran", 10: "rejected", 11: "exception"}
BOUNDARY = (0, 1, 2, 3, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
            0xFFFFFFFE, 0x10000)


@dataclass(frozen=True)
class FuzzReport:
    """Counts per outcome over every mutant, per mutation kind, and the bad mutants' details."""

    count: int
    seed: int
    target: str
    models: tuple[str, ...]
    seconds: float
    outcomes: dict[str, int]
    by_mutation: dict[str, dict[str, int]]
    bad: list[dict[str, object]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Mutator:
    """Seeded mutations of a set of valid model files."""

    def __init__(self, models: list[bytes], seed: int) -> None:
        self.models = models
        self.rng = random.Random(seed)
        # Where each model's structure lives: the bytes worth aiming at.
        self.targets = [verify_structure(m) for m in models]

    def mutate(self) -> tuple[str, bytes]:
        r = self.rng
        k = r.randrange(len(self.models))
        data = bytearray(self.models[k])
        kinds = r.choices(["bitflip", "byteset", "truncate", "chunk", "splice", "targeted"],
                          weights=[2, 1, 1, 1, 1, 4], k=r.choice((1, 1, 1, 2, 3)))
        done = []
        for kind in kinds:
            if not data:  # truncated to nothing: no later mutation has bytes to work on
                break
            data = getattr(self, "_" + kind)(data, k)
            done.append(kind)
        return "+".join(done), bytes(data)

    def _pos(self, data: bytearray) -> int:
        # Half the time near the front, where the flatbuffer's tables and vtables cluster.
        n = len(data)
        return self.rng.randrange(min(n, 4096)) if self.rng.random() < 0.5 else self.rng.randrange(n)

    def _bitflip(self, data: bytearray, _: int) -> bytearray:
        for _ in range(self.rng.randint(1, 8)):
            if data:
                p = self._pos(data)
                data[p] ^= 1 << self.rng.randrange(8)
        return data

    def _byteset(self, data: bytearray, _: int) -> bytearray:
        for _ in range(self.rng.randint(1, 4)):
            if data:
                data[self._pos(data)] = self.rng.choice((0, 0xFF, 0x7F, 0x80, 1, self.rng.randrange(256)))
        return data

    def _truncate(self, data: bytearray, _: int) -> bytearray:
        n = len(data)
        cut = self.rng.choice((self.rng.randrange(n + 1), self.rng.randrange(min(n, 64) + 1),
                               n - self.rng.randrange(1, min(n, 4096) + 1)))
        return data[:max(cut, 0)]

    def _chunk(self, data: bytearray, _: int) -> bytearray:
        if len(data) < 8:
            return data
        a = self._pos(data)
        b = min(len(data), a + self.rng.choice((1, 2, 4, 8, 16, 64, 256)))
        if self.rng.random() < 0.5:
            return data[:a] + data[b:]  # delete: every later offset now points 1..256 bytes off
        return data[:b] + data[a:b] + data[b:]  # duplicate

    def _splice(self, data: bytearray, k: int) -> bytearray:
        other = self.models[self.rng.randrange(len(self.models))]
        a = self._pos(data)
        b = a if self.rng.random() < 0.5 else self.rng.randrange(len(other))
        return data[:a] + bytearray(other[b:])

    def _targeted(self, data: bytearray, k: int) -> bytearray:
        targets = self.targets[k]
        for _ in range(self.rng.randint(1, 3)):
            pos, size = self.rng.choice(targets)
            if pos + size > len(data):
                continue
            r = self.rng.random()
            if r < 0.6:
                value = self.rng.choice(BOUNDARY)
            elif r < 0.8:
                old = int.from_bytes(data[pos:pos + size], "little")
                value = old + self.rng.choice((-4, -1, 1, 4, 8))
            else:
                value = self.rng.randrange(1 << (8 * size))
            data[pos:pos + size] = (value % (1 << (8 * size))).to_bytes(size, "little")
        return data


def load_like_the_runtime(path: str, target: str) -> None:
    """What a user's ``digitkit classify --model path`` does to a model (or the bare interpreter)."""
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    if target in ("raw", "structure"):
        if target == "structure":  # only the in-process flatbuffer check, no probe: what would it miss?
            verify_structure(Path(path).read_bytes(), path)
        _, interpreter_cls = load_interpreter_class()
        interp = interpreter_cls(model_path=path, num_threads=1)
        interp.allocate_tensors()
        d = interp.get_input_details()[0]
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        interp.invoke()
        interp.get_tensor(interp.get_output_details()[0]["index"])
        return
    model = TFLiteModel(path, threads=1)
    model.predict_proba(images[:1])
    model.predict_proba(images)  # a batch of 5: resized to 8
    model.predict_proba(images.astype(np.float32) / 255.0)


def run_child(path: str, target: str, timeout: float, err_w: int) -> None:
    """In the forked child: load, report through the exit status, never return."""
    code = 12
    try:
        signal.alarm(max(1, int(timeout)))  # default action kills the child: seen as SIGALRM = hang
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)  # the interpreter's own log lines
        try:
            load_like_the_runtime(path, target)
            code = 0
        except InferenceError as exc:
            os.write(err_w, f"InferenceError: {exc}"[:300].encode())
            code = 10
        except BaseException as exc:  # noqa: BLE001 -- every other exception is the finding
            os.write(err_w, f"{type(exc).__name__}: {exc}"[:300].encode())
            code = 11
    finally:
        os._exit(code)


def run_one(data: bytes, workdir: str, target: str, timeout: float) -> tuple[str, str]:
    """(outcome, detail) of loading ``data`` in a fresh child process."""
    path = os.path.join(workdir, "mutant.tflite")
    with open(path, "wb") as f:
        f.write(data)
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(err_r)
        run_child(path, target, timeout, err_w)
    os.close(err_w)
    with os.fdopen(err_r, "rb") as f:
        detail = f.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return ("hang", "no result within the timeout") if sig == signal.SIGALRM else (
            "crash", signal.Signals(sig).name)
    code = os.WEXITSTATUS(status)
    return EXIT.get(code, "exception"), detail or f"exit status {code}"


def fuzz(models: list[Path], count: int, seed: int, target: str = "runtime", timeout: float = 60.0,
         keep: Path | None = None, progress: bool = False) -> FuzzReport:
    """Mutate ``models`` ``count`` times and count the outcomes (see the module docstring)."""
    mutator = Mutator([p.read_bytes() for p in models], seed)
    outcomes: collections.Counter[str] = collections.Counter()
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    bad: list[dict[str, object]] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz_tflite_") as work:
        for i in range(count):
            kind, data = mutator.mutate()
            outcome, detail = run_one(data, work, target, timeout)
            outcomes[outcome] += 1
            for k in kind.split("+"):
                by_kind[k][outcome] += 1
            if outcome in BAD:
                entry: dict[str, object] = {"index": i, "mutation": kind, "outcome": outcome, "detail": detail,
                                            "bytes": len(data)}
                if keep is not None:
                    keep.mkdir(parents=True, exist_ok=True)
                    entry["file"] = str(keep / f"{outcome}_{seed}_{i}.tflite")
                    Path(entry["file"]).write_bytes(data)  # type: ignore[arg-type]
                bad.append(entry)
            if progress and (i + 1) % 100 == 0:
                print(f"{i + 1}/{count} {dict(outcomes)}", file=sys.stderr, flush=True)
    return FuzzReport(count, seed, target, tuple(str(m) for m in models), round(time.perf_counter() - start, 1),
                      {o: outcomes[o] for o in OUTCOMES}, {k: {o: c[o] for o in OUTCOMES if c[o]}
                                                             for k, c in sorted(by_kind.items())}, bad)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000, help="mutants to try")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", type=Path, action="append",
                    help="a valid .tflite to mutate (repeatable); default: the shipped int8 model and "
                         f"{FLOAT_CANDIDATE.relative_to(REPO)} if present")
    ap.add_argument("--target", choices=("runtime", "raw", "structure"), default="runtime",
                    help="runtime: TFLiteModel as shipped; raw: the bare interpreter; structure: the flatbuffer "
                         "check then the bare interpreter, without the child-process probe")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a mutant counts as a hang")
    ap.add_argument("--keep", type=Path, help="save every bad mutant here")
    ap.add_argument("--json", type=Path, help="write the report here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    models = args.model or [SHIPPED] + ([FLOAT_CANDIDATE] if FLOAT_CANDIDATE.is_file() else [])
    report = fuzz(models, args.count, args.seed, args.target, args.timeout, args.keep, not args.quiet)
    text = json.dumps(report.to_dict(), indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(json.dumps({"count": report.count, "seconds": report.seconds, "outcomes": report.outcomes}))
    for entry in report.bad[:20]:
        print(f"  #{entry['index']} {entry['mutation']}: {entry['outcome']} {entry['detail']}", file=sys.stderr)
    return 1 if any(report.outcomes[o] for o in BAD) else 0


if __name__ == "__main__":
    sys.exit(main())
