"""`seqvision train --help` reads as reviewed, internal options stay hidden, and the shell completes commands,
options and their values through argcomplete's protocol (real `python -m seqvision` processes)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqvision.cli import COMMANDS


def seqvision(*argv: str, env: dict[str, str] | None = None, python_options: tuple[str, ...] = ()
              ) -> subprocess.CompletedProcess:
    # COLUMNS fixes argparse's wrapping; argcomplete's variables are only those a test passes.
    inherited = {key: value for key, value in os.environ.items() if not key.startswith(("_ARGCOMPLETE", "COMP_"))}
    environment = {**inherited, "COLUMNS": "100", **(env or {})}
    return subprocess.run([sys.executable, *python_options, "-m", "seqvision", *argv], capture_output=True,
                          text=True, env=environment, timeout=120)


def test_train_help_matches_golden(golden):
    result = seqvision("train", "--help")
    assert result.returncode == 0, result.stderr
    golden("cli_train_help.txt", result.stdout)


def test_train_help_has_its_groups_and_examples():
    text = seqvision("train", "--help").stdout
    for heading in ("data options:", "model options:", "optimisation options:", "run options:", "examples:"):
        assert f"\n{heading}\n" in text, heading
    assert text.index("run options:") < text.index("examples:"), "the examples close the help"


@pytest.mark.parametrize("command", ["train", "compare", "cv"])
def test_internal_cross_validation_options_are_hidden(command):
    result = seqvision(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "--cv-folds" not in result.stdout
    assert "--cv-fold" not in result.stdout


def imported_modules(stderr: str) -> set[str]:
    """Module names from `python -X importtime` lines: "import time: self | cumulative | name"."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]])
def test_help_answers_fast_without_torch(argv):
    started = time.monotonic()
    result = seqvision(*argv, python_options=("-X", "importtime"))
    elapsed = time.monotonic() - started
    assert result.returncode == 0
    modules = imported_modules(result.stderr)
    assert "seqvision.cli" in modules, "the probe sees the imports"
    assert not {name for name in modules if name.split(".")[0] in ("torch", "lightning")}
    assert elapsed < 10, f"--help took {elapsed:.1f} s"


def complete(line: str, tmp_path: Path, python_options: tuple[str, ...] = ()) -> tuple[list[str], str]:
    """What the shell gets for `line` with the cursor at its end, as bash's argcomplete hook asks for it."""
    answer = tmp_path / "completions.txt"
    result = seqvision(python_options=python_options, env={
        "_ARGCOMPLETE": "1",  # the command line starts with the program itself (`seqvision ...`)
        "_ARGCOMPLETE_IFS": "\n",
        "_ARGCOMPLETE_SUPPRESS_SPACE": "1",  # no trailing space after a single match
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
    })
    assert result.returncode == 0, result.stderr
    text = answer.read_text()
    return (text.split("\n") if text else []), result.stderr


def test_completes_scheduler_values_without_torch(tmp_path):
    completions, stderr = complete("seqvision train --scheduler ", tmp_path, python_options=("-X", "importtime"))
    assert completions == ["none", "plateau", "cosine", "onecycle"]
    assert "torch" not in imported_modules(stderr)


def test_completes_a_partial_value(tmp_path):
    assert complete("seqvision train --scheduler c", tmp_path)[0] == ["cosine"]


def test_completes_model_names(tmp_path):
    from seqvision.models import model_names

    completions, _ = complete("seqvision train --model ", tmp_path)
    assert completions == model_names()
    assert {"lstm", "cnn", "renet", "gru", "bilstm"} <= set(completions)


def test_completes_dataset_names(tmp_path):
    assert complete("seqvision cv --dataset ", tmp_path)[0] == ["cifar10", "digits", "emnist-digits", "emnist-letters",
                                                              "fashion-mnist", "kmnist", "mnist"]


def test_completes_subcommands(tmp_path):
    completions, _ = complete("seqvision ", tmp_path)
    assert [word for word in completions if not word.startswith("-")] == list(COMMANDS)
    assert [word for word in completions if word.startswith("-")] == ["-h", "--help", "--version"]


def test_completes_train_options(tmp_path):
    completions, _ = complete("seqvision train --re", tmp_path)
    assert completions == ["--resume"]
    completions, _ = complete("seqvision train --cv", tmp_path)
    assert completions == [], "the internal --cv-folds and --cv-fold are not offered"
