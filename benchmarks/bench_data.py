"""The checks a benchmark makes before it measures anything, so that a missing piece ends it with one line that
says how to provide it, never with a traceback halfway through.

- `require_dataset`, `mnist_folder`: the folder seqvision will read an MNIST-style dataset from, searched in
  seqvision's own order ($SEQVISION_DATA or --data-dir, the user cache, the system folders). A benchmark never
  downloads: a download would land inside what it times, so a missing dataset is refused with the command that
  fetches it.
- `run`: calls a benchmark's main, and ends it on seqvision's errors (input the user can correct) with one
  `error:` line and status 2, as the seqvision command does; a failed child process ends it with one line too.

The scripts in benchmarks/ import this module by name: Python puts a script's own folder first on sys.path.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from seqvision.errors import ConfigError, DatasetError, SeqvisionError

if TYPE_CHECKING:
    from seqvision.config import TrainConfig
    from seqvision.data.datasets import IdxDataset

# This repository's datasets, relative to its root: the value its documented benchmark commands set.
REPOSITORY_DATA = "../shared/datasets"
REPOSITORY = Path(__file__).resolve().parent.parent


def mnist_folder() -> Path:
    """The folder that holds the MNIST files (side_by_side.py hands it to the Keras programs, which read it)."""
    from seqvision.data.datasets import MNIST

    return idx_folder(MNIST, None)


def require_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder an MNIST-style dataset will be read from (see idx_folder); None for other datasets, which
    seqvision's loader finds, downloads or refuses itself."""
    dataset = idx_dataset(name)
    return None if dataset is None else idx_folder(dataset, data_dir)


def idx_dataset(name: str) -> IdxDataset | None:
    from seqvision.data.datasets import FASHION_MNIST, MNIST

    return next((dataset for dataset in (MNIST, FASHION_MNIST) if dataset.name == name), None)


def idx_folder(dataset: IdxDataset, data_dir: str | os.PathLike[str] | None) -> Path:
    """The first folder, in seqvision's search order, that holds all four files of `dataset`; raises DatasetError
    (one line: where it looked and the fix) when none does."""
    from seqvision.data.sources import candidate_dirs, find_in

    files = (dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels)
    candidates = candidate_dirs(dataset.name, Path(data_dir) if data_dir is not None else None)
    for folder, _ in candidates:
        if find_in(folder, files) is not None:
            return folder
    looked = ", ".join(f"{folder} ({why})" for folder, why in candidates)
    raise DatasetError(missing_dataset_message(dataset.name, looked, files[0].label, data_dir is not None))


def missing_dataset_message(name: str, looked: str, first_file: str, explicit_dir: bool) -> str:
    """One line: the folders searched, and the two ways to provide the files (a data folder, or a download)."""
    from seqvision.data.sources import cache_dir

    unset = "" if explicit_dir or os.environ.get("SEQVISION_DATA") else "SEQVISION_DATA is not set and "
    if explicit_dir:
        fix = f"Pass a --data-dir that holds {name}/ or its files"
    else:
        fix = f"Set SEQVISION_DATA to a folder holding {name}/ (for this repository: SEQVISION_DATA={REPOSITORY_DATA})"
    download = f"`.venv/bin/seqvision train --dataset {name} --epochs 1 --train-limit 100 --test-limit 100`"
    if os.environ.get("SEQVISION_NO_DOWNLOAD") == "1":
        download += " with SEQVISION_NO_DOWNLOAD unset"
    return (f"{unset}the {name} files ({first_file} and three more) are in none of: {looked}. {fix}, or download "
            f"them once into {cache_dir(name)} with {download}.")


def train_dataset(argv: Sequence[str]) -> tuple[str, str | None]:
    """The dataset and data folder that `seqvision train ARGV` would train on (its --config, then its flags)."""
    from seqvision.cli import build_parser
    from seqvision.config import TrainConfig, load_preset

    args = build_parser().parse_args(["train", *argv])
    config = load_preset(args.config) if args.config else TrainConfig()
    return args.dataset or config.dataset, args.data_dir or config.data_dir


def run_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The configuration a run folder or a model bundle was trained with, read without loading its model."""
    from seqvision.config import TrainConfig
    from seqvision.runs.folder import RunFolder

    bundle = Path(run_dir) / "bundle.json"
    if bundle.is_file():
        return TrainConfig.from_dict(json.loads(bundle.read_text())["config"], origin=str(bundle))
    return RunFolder.open(run_dir).load_config()


def commit_of(revision: str) -> str:
    """The short hash of `revision` in this repository, for the scripts' --versus; raises ConfigError (one line,
    with the fix) when the revision or the repository is missing."""
    try:
        return subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "--short", "--verify", "--quiet",
                               f"{revision}^{{commit}}"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise ConfigError(f"--versus {revision}: no such commit in {REPOSITORY} (or it is not a git clone); give "
                          "a commit of `git log`, for example 7219ab8, from a clone of seqvision") from None


def source_at(commit: str, folder: Path) -> Path:
    """seqvision's src/ as it was at `commit`, taken out of git (`git archive`) into `folder`: the PYTHONPATH that
    runs that version with this interpreter."""
    # git's own message, if any, goes to the terminal above the one-line error that `run` prints.
    archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", commit, "src"], stdout=subprocess.PIPE,
                             check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder / commit, filter="data")
    return folder / commit / "src"


def run(main: Callable[[], int | None]) -> None:
    """Call a benchmark's main and exit with its status; seqvision's errors end it with one `error:` line, status 2."""
    try:
        status = main()
    except SeqvisionError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except subprocess.CalledProcessError as error:
        # The child printed its own messages above; the parent's traceback would only bury them.
        print(f"error: {shlex.join(map(str, error.cmd))} exited with status {error.returncode}; its messages are "
              "above.", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(status)
