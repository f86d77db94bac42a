"""``digitkit pipeline``: train -> convert (int8, float32 baseline) -> verify -> bench -> classify -> report.

Every stage writes its artefacts into the output folder and then a marker ``stages/NAME.json`` (its
settings fingerprint, artefacts and figures). Re-running with the same folder reuses a stage whose marker,
fingerprint and artefacts are all there; once a stage runs, every later stage runs again. ``force`` runs
everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from digitkit.runtime.fileio import atomic_write_json, remove_stale_temps
from digitkit.toolkit import stages
from digitkit.toolkit.errors import ToolkitError
from digitkit.toolkit.pipeline_types import (
    STAGES,
    Callback,
    PipelineConfig,
    PipelineResult,
    StageEvent,
    StageResult,
)


def _fingerprint(stage: str, config: PipelineConfig) -> str:
    """The settings a stage's output depends on (its own and every earlier stage's)."""
    keys = {"train": ("data_dir", "arch", "epochs", "seed"), "convert": ("max_drop",), "verify": (),
            "bench": ("threads", "runs", "warmup"), "classify": ("samples",), "report": ()}
    upto = STAGES[: STAGES.index(stage) + 1]
    picked = {k: getattr(config, k) for s in upto for k in keys[s]}
    picked["data_dir"] = str(Path(config.data_dir).resolve()) if config.data_dir else None
    return hashlib.sha256(json.dumps(picked, sort_keys=True, default=str).encode()).hexdigest()[:16]


def marker_path(out: str | os.PathLike[str], stage: str) -> Path:
    return Path(out) / "stages" / f"{stage}.json"


def _finished(out: Path, stage: str, config: PipelineConfig) -> dict[str, Any] | None:
    """The stage's marker if the stage is finished for these settings, else None."""
    try:
        marker = json.loads(marker_path(out, stage).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if marker.get("fingerprint") != _fingerprint(stage, config):
        return None
    if not all((out / a).exists() for a in marker.get("artefacts", [])):
        return None
    return marker


def _load(load: Callable[[dict[str, Any]], Any], summary: Any) -> Any:
    """A stage's result rebuilt from its marker, or None when the marker is from an older digitkit (the stage
    then runs again)."""
    try:
        return load(summary)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def plan(config: PipelineConfig) -> dict[str, str]:
    """Which stages a run with ``config`` would reuse and which it would run: {stage: "reuse" | "run"}."""
    out = Path(config.out)
    result, dirty = {}, config.force
    for stage in STAGES:
        dirty = dirty or _finished(out, stage, config) is None
        result[stage] = "run" if dirty else "reuse"
    return result


def check_config(config: PipelineConfig) -> Path:
    """Validate ``config`` and prepare its output folder before any work; returns the folder.

    Raises:
        ToolkitError: unknown architecture, bad numbers, or an output that is not a writable folder.
    """
    from digitkit.toolkit.models import ARCHITECTURES

    if config.arch not in ARCHITECTURES:
        raise ToolkitError(f"unknown architecture {config.arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    if config.epochs < 1:
        raise ToolkitError(f"--epochs {config.epochs} must be at least 1")
    if not config.threads or any(t < 1 for t in config.threads):
        raise ToolkitError(f"--threads {config.threads}: every thread count must be >= 1")
    if config.samples < 1 or config.runs < 1 or config.warmup < 0:
        raise ToolkitError("samples and runs must be >= 1, warmup >= 0")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ToolkitError(f"--out {out} is a file; pass a folder for the pipeline's artefacts")
    try:
        (out / "stages").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolkitError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK):
        raise ToolkitError(f"--out {out}: folder is not writable; choose another --out")
    remove_stale_temps(out, recursive=True)  # what an earlier run killed mid-write left behind
    return out


def pipeline(config: PipelineConfig | None = None, on_event: Callback | None = None,
             **overrides: Any) -> PipelineResult:
    """Train, convert, verify, benchmark, classify and report into ``config.out``; Python twin of
    ``digitkit pipeline``.

    Args:
        config: settings (``PipelineConfig()`` if None); keyword ``overrides`` replace fields.
        on_event: receives a StageEvent as stages start, progress and finish.

    Returns:
        PipelineResult. A failed accuracy gate does not raise: ``gate_passed`` is False and the report
        says why (the CLI exits 3).

    Raises:
        ToolkitError / ConversionError / InferenceError: bad settings or unusable inputs.
    """


    config = PipelineConfig(**{**(config.to_dict() if config else {}), **overrides})
    config = PipelineConfig(**{**config.to_dict(), "threads": tuple(config.threads)})
    out = check_config(config)
    emit = on_event or (lambda event: None)
    start = time.perf_counter()
    ctx = stages.Context(config=config, out=out, emit=emit)
    results: list[StageResult] = []
    dirty = config.force
    for name in STAGES:
        attribute, load = stages.RESULTS[name]
        marker = None if dirty else _finished(out, name, config)
        value = _load(load, marker["summary"]) if marker is not None else None
        if marker is not None and value is not None:
            setattr(ctx, attribute, value)
            results.append(StageResult(name, "reused", float(marker.get("seconds", 0.0)),
                                       tuple(marker["artefacts"]), marker["summary"]))
            emit(StageEvent(name, "reused", message="reused"))
            continue
        dirty = True
        marker_path(out, name).unlink(missing_ok=True)
        emit(StageEvent(name, "start"))
        t0 = time.perf_counter()
        artefacts, value = getattr(stages, f"run_{name}")(ctx)
        seconds = round(time.perf_counter() - t0, 2)
        summary = json.loads(json.dumps(value.to_dict()))
        # Later stages get the value as a reused run would rebuild it from this marker: a fresh run and a
        # re-run then report the very same figures.
        setattr(ctx, attribute, load(summary))
        atomic_write_json(marker_path(out, name), {"stage": name, "fingerprint": _fingerprint(name, config),
                                                   "seconds": seconds, "artefacts": list(artefacts),
                                                   "summary": summary})
        results.append(StageResult(name, "ran", seconds, tuple(artefacts), summary))
        emit(StageEvent(name, "done", message=f"{seconds:.0f} s"))
    headline = stages.headline(ctx)
    return PipelineResult(out=str(out), report_path=str(out / "report.md"),
                          seconds=round(time.perf_counter() - start, 1),
                          gate_passed=bool(headline["gate_passed"]), summary=headline, stages=tuple(results))
