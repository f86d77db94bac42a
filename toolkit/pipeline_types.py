"""The pipeline's values: its settings, the events a progress display receives, what each stage hands on
(the existing result dataclasses -- TrainResult, ConversionReport, EvalResult, BenchReport -- and a few of its
own), and the run's result. Shared by ``pipeline``, ``stages``, ``pipeline_report`` and the CLI, importing none
of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from digitkit.converters.report import ConversionReport
from digitkit.toolkit.evaluate import EvalResult
from digitkit.toolkit.train import TrainConfig

STAGES = ("train", "convert", "verify", "bench", "classify", "report")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that decides a pipeline run; training and conversion defaults come from their configs."""

    out: str = "runs/pipeline"
    data_dir: str | None = None
    arch: str = TrainConfig.arch
    epochs: int = TrainConfig.epochs
    seed: int = TrainConfig.seed
    max_drop: float | None = None  # None: the converter's default gate
    threads: tuple[int, ...] = (1,)
    runs: int = 500  # bench: timed single-image calls per row
    warmup: int = 50
    samples: int = 8  # test digits the classify stage reads
    force: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StageEvent:
    """What the pipeline tells a progress display: a stage started, progressed, finished or was reused."""

    stage: str
    state: str  # "start" | "progress" | "done" | "reused"
    completed: float | None = None
    total: float | None = None
    message: str = ""


@dataclass(frozen=True)
class StageResult:
    """One stage: whether it ran or was reused, how long it took, what it wrote, and its figures."""

    name: str
    status: str  # "ran" | "reused"
    seconds: float
    artefacts: tuple[str, ...]
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "artefacts": list(self.artefacts)}


@dataclass(frozen=True)
class PipelineResult:
    """The run: the stages, the headline figures (``summary``) and where the report is."""

    out: str
    report_path: str
    seconds: float
    gate_passed: bool
    summary: dict[str, Any]
    stages: tuple[StageResult, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stages": [s.to_dict() for s in self.stages]}


Callback = Callable[[StageEvent], None]


# ---- what the stages hand on: the existing result dataclasses, and three small ones for the pipeline's own steps.
# Each has to_dict (the stage marker's JSON) and from_dict (a reused stage is rebuilt from its marker).

@dataclass(frozen=True)
class Conversions:
    """The convert stage: the float32 baseline and the int8 model, as the converter reported them."""

    float32: ConversionReport
    int8: ConversionReport

    def path(self, mode: str) -> str:
        """The file name (in the pipeline's folder) of ``mode``'s model: the kept one when the gate failed."""
        report: ConversionReport = getattr(self, mode)
        return Path(report.model_path if report.passed else str(report.rejected_path)).name

    def to_dict(self) -> dict[str, Any]:
        return {"float32": self.float32.to_dict(), "int8": self.int8.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conversions:
        return cls(ConversionReport(**data["float32"]), ConversionReport(**data["int8"]))


@dataclass(frozen=True)
class Verification:
    """The verify stage: the files on disk re-evaluated (keras, float32, int8) and the gate checked again."""

    models: dict[str, EvalResult]
    drop_pp: float
    max_drop_pp: float
    passed: bool
    matches_conversion: bool  # the int8 file scores what the converter measured before writing it

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "models": {k: v.to_dict() for k, v in self.models.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verification:
        return cls(**{**data, "models": {k: EvalResult(**v) for k, v in data["models"].items()}})


@dataclass(frozen=True)
class DigitRead:
    """One test digit read by the runtime classifier."""

    true: int
    read: str
    confidence: float | None


@dataclass(frozen=True)
class Classification:
    """The classify stage: single test digits, and a line of them on paper, read by the runtime."""

    digits: tuple[DigitRead, ...]
    strip_truth: str
    strip_read: str
    strip_confidences: tuple[float, ...]

    @property
    def correct(self) -> int:
        return sum(d.read == str(d.true) for d in self.digits)

    def to_dict(self) -> dict[str, Any]:
        return {"digits": [asdict(d) for d in self.digits], "correct": self.correct,
                "strip": {"truth": self.strip_truth, "read": self.strip_read,
                          "confidences": list(self.strip_confidences)}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Classification:
        strip = data["strip"]
        return cls(tuple(DigitRead(**d) for d in data["digits"]), strip["truth"], strip["read"],
                   tuple(strip["confidences"]))


@dataclass(frozen=True)
class ReportFile:
    """The report stage: where report.md is (relative to the pipeline's folder)."""

    report: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReportFile:
        return cls(**data)
