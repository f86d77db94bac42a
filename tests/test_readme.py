"""The README says what the CLI does: every verb's options and exit codes as ``--help`` lists them, and its
examples run as written from a fresh clone (with the data in ``../shared/data``, as the README says)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digitkit.cli import VERBS, app

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
SHARED = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent
runner = CliRunner()


def section(verb: str) -> str:
    start = README.index(f"### `digitkit {verb}`")
    ends = [i for i in (README.find("\n### ", start + 1), README.find("\n## ", start + 1)) if i > 0]
    return README[start:min(ends)]


def blocks(text: str, kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", text, flags=re.DOTALL)


def commands(block: str) -> list[str]:
    """The ``digitkit ...`` commands of a code block, continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip().startswith("digitkit ")]


def help_text(*args: str) -> str:
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def options(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)) - {"--help"}


@pytest.mark.parametrize("verb", list(VERBS))
def test_each_verb_section_lists_exactly_the_options_of_its_help(verb: str) -> None:
    usage = blocks(section(verb), "text")
    assert usage, f"README: the {verb} section has no usage block"
    in_help = options(help_text(verb).split("Options:")[1])
    assert options(usage[0]) == in_help, f"{verb}: README usage vs --help"
    for block in blocks(section(verb), "bash"):
        assert options(block) <= in_help, f"{verb}: a README example uses an option --help does not list"


def exit_codes(text: str) -> set[int]:
    found = re.search(r"Exit codes?:(.*?)(?:\n\s*\n|$)", text, flags=re.DOTALL)
    assert found, text
    return {int(code) for code in re.findall(r"(?:^|·)\s*(\d)\b", found[1].replace("\n", " "))}


def test_exit_codes_agree_between_readme_and_help() -> None:
    table = dict(re.findall(r"^\| `([\w-]+)` \| ([\d ·]+) \|$", README, flags=re.MULTILINE))
    assert set(table) == set(VERBS)
    for verb, codes in table.items():
        readme = {int(c) for c in re.findall(r"\d", codes)}
        assert readme == exit_codes(help_text(verb)), verb
        assert readme == exit_codes(section(verb)), f"{verb}: its README section and the table disagree"
    assert exit_codes(help_text()) == {0, 1, 2, 3}


def _fresh_clone(tmp_path: Path) -> Path:
    """The committed and working files of the repository (what a clone has), beside a ``shared`` folder."""
    if not SHARED.is_dir():
        pytest.skip(f"the shared data is not at {SHARED}")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    clone = tmp_path / "digitkit"
    for name in listed.decode().split("\0"):
        if name and (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(SHARED)
    return clone


def _run(command: str, clone: Path) -> subprocess.CompletedProcess:
    args = shlex.split(command)
    done = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=clone, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, (command, done.stderr[-2000:])
    if "--json" in args and args[1] in ("evaluate", "classify", "models"):
        for line in done.stdout.splitlines():  # stdout holds nothing but JSON
            json.loads(line)
    return done


def all_examples() -> list[str]:
    """Every runnable example in the CLI section, in README order."""
    cli = README[README.index("## The CLI"):README.index("## Architecture")]
    return [c for block in blocks(cli, "bash") for c in commands(block)]


# What needs a model trained first (minutes of training) is left to the slow test below.
NEEDS_TRAINING = (" models/", " runs/", "digitkit train", "digitkit pipeline")


def test_readme_examples_that_need_no_training_run_as_written(tmp_path: Path) -> None:
    quick = [c for c in all_examples() if not any(word in c for word in NEEDS_TRAINING)]
    assert {shlex.split(c)[1] for c in quick} >= {"models", "evaluate", "classify", "bench"}
    clone = _fresh_clone(tmp_path)
    for command in quick:
        _run(command, clone)


@pytest.mark.slow
def test_every_readme_example_runs_as_written_in_order(tmp_path: Path) -> None:
    """train (60 epochs), convert, evaluate, classify, bench, pipeline: about 15 minutes here."""
    clone = _fresh_clone(tmp_path)
    examples = all_examples()
    assert any(c.startswith("digitkit train") for c in examples) and any("pipeline" in c for c in examples)
    # The README lists verbs by topic; run what makes a file before what reads it.
    first = [c for c in examples if c.startswith(("digitkit train", "digitkit convert"))]
    for command in first + [c for c in examples if c not in first]:
        _run(command, clone)


def test_the_architecture_drawing_names_every_module_and_only_those() -> None:
    """The package drawing must match the code: each package's modules, no more, no fewer."""
    drawing = blocks(README[README.index("## Architecture"):], "text")[0]
    folders = {"digitkit.toolkit": REPO / "toolkit", "digitkit.runtime": REPO / "runtime",
               "digitkit.converters": REPO / "converters", "digitkit ": REPO / "src" / "digitkit"}
    named = set(re.findall(r"\b[a-z_]+\b", drawing))
    for package, folder in folders.items():
        assert package.strip() in drawing
        modules = {p.stem for p in folder.glob("*.py")} - {"__init__"}
        assert modules <= named, f"{package}: {sorted(modules - named)} missing from the README drawing"
    every = {p.stem for f in folders.values() for p in f.glob("*.py")}
    words = set(re.findall(r"^ [│ ]*\s*([a-z_ ]+)$", drawing, flags=re.MULTILINE))
    listed = {w for line in words for w in line.split()}
    assert listed <= every | {"digitkit", "errors"}, sorted(listed - every)
