"""The pipeline's values: its settings, the events a progress display receives, and each stage's and the
run's results. Shared by ``pipeline``, ``stages``, ``pipeline_report`` and the CLI, and importing none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

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
