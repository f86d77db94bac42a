"""Present a benchmark: table rows (shared by the terminal and markdown), PNG plots, and ``report.md``.

matplotlib (Agg backend) is imported inside the plotting functions; every file goes through a temp file
and a rename.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from digitkit.runtime.fileio import atomic_path, atomic_write_text
from digitkit.toolkit.bench_types import BenchReport, BenchResult
from digitkit.toolkit.evaluate import confusion_matrix

COLUMNS = ("model", "mode", "backend", "threads", "size KB", "load ms", "accuracy", "agree", "p50 ms",
           "mean±std ms", "p90 ms", "p99 ms", "images/s", "peak RSS MB", "×size", "×p50", "×images/s")
# The terminal drops the columns the JSON and report.md keep (load, mean±std, p90) to fit a wide terminal.
TERMINAL_COLUMNS = tuple(c for c in COLUMNS if c not in ("load ms", "mean±std ms", "p90 ms"))
PLOTS = {"accuracy_vs_latency": "Accuracy vs single-image p50 latency", "latency": "Latency distributions",
         "confusion": "Confusion matrix", "misclassified": "Misclassified test digits"}


def table_rows(report: BenchReport) -> list[tuple[str, ...]]:
    """One tuple of display strings per result, in ``COLUMNS`` order."""
    rows = []
    for r in report.results:
        lat = r.latency_ms
        rows.append((
            r.name, f"{r.format} {r.mode}", r.backend, str(r.threads), f"{r.size_bytes / 1024:,.1f}",
            f"{r.load_ms:.1f}", f"{r.accuracy:.2%}", f"{r.agreement:.2%}", f"{lat.p50:.3f}",
            f"{lat.mean:.3f}±{lat.std:.3f}", f"{lat.p90:.3f}", f"{lat.p99:.3f}", f"{r.throughput_ips:,.0f}",
            f"{r.peak_rss_mb:,.0f}", f"{r.ratios['size']:.3f}", f"{r.ratios['p50']:.3f}",
            f"{r.ratios['throughput']:.2f}",
        ))
    return rows


# When the terminal is narrow, columns go in this order (the last first); the JSON and report.md keep them all.
_DROP_ORDER = ("×images/s", "×size", "agree", "p99 ms", "size KB", "images/s", "threads", "backend")


def terminal_table(report: BenchReport, width: int = 160) -> Any:
    """A rich Table of the benchmark that fits ``width`` columns: the columns of ``TERMINAL_COLUMNS``, less
    those in ``_DROP_ORDER`` as needed; a long model name wraps instead of being cut (no ``99.6…``)."""
    from rich import box
    from rich.table import Table

    rows = table_rows(report)
    columns = list(TERMINAL_COLUMNS)

    def needed(cols: list[str]) -> int:  # each column's widest cell (the model name may wrap), +2 padding
        return sum(2 + (min(12, max(len(col), *(len(r[COLUMNS.index(col)]) for r in rows))) if col == "model"
                        else max(len(col), *(len(r[COLUMNS.index(col)]) for r in rows))) for col in cols)

    for col in _DROP_ORDER:
        if needed(columns) <= width:
            break
        columns.remove(col)
    left_out = [c for c in TERMINAL_COLUMNS if c not in columns]
    caption = f"left out at this width: {', '.join(left_out)} (all in --json and --report)" if left_out else None
    table = Table(title=f"{report.test_size} test images · ratios (×) vs {Path(report.reference).name}, same threads",
                  box=box.SIMPLE_HEAD, padding=(0, 1), caption=caption)
    for col in columns:
        text = col in ("model", "mode", "backend")
        table.add_column(col, justify="left" if text else "right", no_wrap=not text, overflow="fold")
    for row in rows:
        table.add_row(*(row[COLUMNS.index(c)] for c in columns))
    return table


def profile_note(report: BenchReport) -> str:
    """What machine profile the numbers describe (pinned CPUs, threads)."""
    cfg = report.config
    if cfg.pin_cpu:
        cpus = ",".join(map(str, cfg.pin_cpu))
        kind = " (Raspberry-Pi-class single-core profile)" if len(cfg.pin_cpu) == 1 and cfg.threads == (1,) else ""
        return f"Inference processes pinned to CPU {cpus} with os.sched_setaffinity{kind}."
    return f"Inference processes not pinned; {report.environment.get('cpu_count')} CPUs visible."


def focus_result(report: BenchReport) -> BenchResult:
    """The row the confusion matrix and error grid describe: the first int8 model, else the last row."""
    return next((r for r in report.results if r.mode == "int8"), report.results[-1])


def _what(r: BenchResult) -> str:
    return r.name if r.name == r.mode else f"{r.name} ({r.mode})"


def markdown_table(headers: tuple[str, ...] | list[str], rows: list[tuple[str, ...]]) -> str:
    """A GitHub-flavoured markdown table; the first column and text columns left-aligned, figures right."""
    right = [i for i, h in enumerate(headers) if i > 0 and h not in ("model", "mode", "backend", "bar")]
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _save(fig: Any, target: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return target


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_latency(report: BenchReport, target: Path) -> Path:
    """One point per model/backend/threads: x = p50 latency (log scale), y = test accuracy."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, r in enumerate(report.results):
        ax.scatter(r.latency_ms.p50, 100 * r.accuracy, s=70, marker="osD^vP*X"[k % 8], label=r.label, alpha=0.85)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    ax.set_xscale("log")
    ax.set_xlabel("single-image p50 latency (ms, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Accuracy vs latency ({report.test_size} test images)")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, target)


def plot_latency(report: BenchReport, target: Path) -> Path:
    """Box plots of the single-image latency samples, one per row (log scale)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(report.results) + 1.5))
    ax.boxplot([r.latency_samples_ms for r in report.results], orientation="horizontal", showfliers=True,
               tick_labels=[r.label for r in report.results], flierprops={"markersize": 2})
    ax.set_xscale("log")
    ax.set_xlabel(f"single-image latency (ms, log scale; {report.config.runs} runs after "
                  f"{report.config.warmup} warm-up)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return _save(fig, target)


def plot_confusion(labels: np.ndarray, predictions: np.ndarray, title: str, target: Path) -> Path:
    """The confusion matrix with counts (rows: true, columns: predicted; an 11th column, "none", counts the
    digits a model with a "not a digit" output refused)."""
    plt = _pyplot()
    outputs = max(10, int(predictions.max(initial=0)) + 1)
    cm = confusion_matrix(labels, predictions.astype(np.int64), classes=10, outputs=outputs)
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(np.log1p(cm), cmap="Blues")
    for i in range(10):
        for j in range(outputs):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if i == j else ("crimson" if cm[i, j] else "black"))
    ax.set_xticks(range(outputs), [*map(str, range(10)), "none"][:outputs])
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, target)


def plot_digit_grid(images: np.ndarray, captions: list[str], title: str, target: Path, cols: int = 10) -> Path:
    """A grid of 28x28 digits, each with a caption underneath (e.g. predicted and true labels)."""
    plt = _pyplot()
    n = max(1, len(images))
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.0, rows * 1.2 + 0.5), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=255)
            ax.set_title(captions[k], fontsize=8, color="crimson" if "true" in captions[k] else "black")
    if len(images) == 0:
        axes.flat[0].text(0.5, 0.5, "none", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    return _save(fig, target)


def write_bench_plots(report: BenchReport, images: np.ndarray, out_dir: str | os.PathLike[str],
                      max_errors: int = 40) -> dict[str, Path]:
    """The four PNGs of a benchmark report; returns {plot key: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    focus = focus_result(report)
    wrong = np.flatnonzero(focus.predictions != report.labels)[:max_errors]
    return {
        "accuracy_vs_latency": plot_accuracy_vs_latency(report, out / "accuracy_vs_latency.png"),
        "latency": plot_latency(report, out / "latency.png"),
        "confusion": plot_confusion(report.labels, focus.predictions,
                                    f"{_what(focus)}: confusion matrix", out / "confusion.png"),
        "misclassified": plot_digit_grid(
            images[wrong], [f"{focus.predictions[i]} (true {report.labels[i]})" for i in wrong],
            f"{_what(focus)}: {int(np.sum(focus.predictions != report.labels))} of "
            f"{len(report.labels)} test digits wrong (first {len(wrong)}: predicted, true)",
            out / "misclassified.png"),
    }


def bench_markdown(report: BenchReport, plots: dict[str, Path], relative_to: Path, heading: str = "#") -> str:
    """The benchmark section of a report: settings, machine, the table, and the plots."""
    cfg = report.config
    env = ", ".join(f"{k} {v}" for k, v in report.environment.items())
    focus = focus_result(report)
    parts = [
        f"{heading} Benchmark",
        "",
        f"{report.test_size} test images from `{report.data_source}`; single-image latency over {cfg.runs} runs "
        f"after {cfg.warmup} warm-up calls (`time.perf_counter_ns`); throughput is the median of 3 passes "
        f"over the test images in batches of {cfg.batch_size}. Every row ran in its own process (load time "
        f"and peak RSS are that model's alone). Ratios (×) are against `{Path(report.reference).name}` with "
        f"the same thread count; agreement is with its predictions. {profile_note(report)}",
        "",
        f"Machine: {env}. Run at {report.created}.",
        "",
        markdown_table(COLUMNS, table_rows(report)),
        "",
    ]
    for key, path in plots.items():
        title = PLOTS[key] + (f" — {_what(focus)}" if key in ("confusion", "misclassified") else "")
        parts += [f"{heading}# {title}", "", f"![{title}]({os.path.relpath(path, relative_to)})", ""]
    return "\n".join(parts)


def write_bench_report(report: BenchReport, images: np.ndarray, out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir/report.md`` plus its PNGs; returns the report path."""
    out = Path(out_dir)
    plots = write_bench_plots(report, images, out)
    target = out / "report.md"
    atomic_write_text(target, bench_markdown(report, plots, out) + "\n")
    return target
