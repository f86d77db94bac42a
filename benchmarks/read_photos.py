"""How many real photos ``digitkit classify`` reads exactly: ../shared/data/photos with its labels.csv.

    python benchmarks/read_photos.py [--photos DIR] [--model FILE] [--out FILE.json] [--quiet]

Prints the exact-read rate by ``kind`` and overall, and lists every photo read wrong (truth, reading,
confidences). The photos are a development set: measure generated data too (benchmarks/lines.py,
benchmarks/photos.py quality).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default=str(REPO.parent / "shared/data/photos"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", help="write the result as JSON here")
    ap.add_argument("--quiet", action="store_true", help="only the summary")
    a = ap.parse_args()
    from digitkit.runtime.classifier import DigitClassifier

    folder = Path(a.photos)
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    clf = DigitClassifier(model_path=a.model, threads=1)
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    wrong = []
    t0 = time.perf_counter()
    for row in rows:
        reading = clf.classify(str(folder / row["file"]))
        ok = reading.text == row["text"]
        by_kind[row["kind"]][0] += ok
        by_kind[row["kind"]][1] += 1
        if not ok:
            wrong.append({"file": row["file"], "kind": row["kind"], "truth": row["text"], "read": reading.text,
                          "confidences": [round(d.confidence, 2) for d in reading.digits]})
    seconds = time.perf_counter() - t0
    exact = sum(v[0] for v in by_kind.values())
    print(f"{'kind':<24} exact")
    for kind, (ok, n) in sorted(by_kind.items()):
        print(f"{kind:<24} {ok}/{n}")
    print(f"{'all':<24} {exact}/{len(rows)} ({100 * exact / len(rows):.1f} %) in {seconds:.1f} s")
    if not a.quiet:
        for w in wrong:
            print(f"  {w['file']:<48} {w['kind']:<22} truth {w['truth'] or '-':<11} read {w['read'] or '-':<11} "
                  f"{' '.join(f'{c:.2f}' for c in w['confidences'])}")
    if a.out:
        from digitkit.runtime.fileio import atomic_write_text

        res = {"photos": len(rows), "exact": exact, "by_kind": {k: {"exact": v[0], "n": v[1]}
                                                                for k, v in by_kind.items()},
               "wrong": wrong, "model": a.model or "shipped"}
        atomic_write_text(a.out, json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
