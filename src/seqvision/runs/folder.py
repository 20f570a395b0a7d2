"""The run folder: everything one training run leaves behind, in a layout `eval` and `--resume` can trust.

    RUN_DIR/
      run.json            format version, status, image shape, normalisation, dataset source
      config.yaml         the resolved TrainConfig
      history.csv         one row per epoch: train/val loss and accuracy, learning rate, seconds
      curves.png          loss and accuracy, train vs validation
      summary.txt         layer table with output shapes and parameter counts
      test_metrics.json   test loss and accuracy of the best checkpoint
      checkpoints/        best.ckpt, last.ckpt, and interrupted.ckpt after Ctrl-C
      report.html, ...    the evaluation report (seqvision.evaluation.report lists its files)
      .lock               held by the process training in the folder, so that a second one is refused
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from seqvision.atomic import write_json_atomic
from seqvision.config import FOLDER_PREFIX, TrainConfig
from seqvision.errors import ConfigError, RunFolderError, RunLockedError

RUN_FORMAT = 1
CHECKPOINT_NAMES = ("best", "last", "interrupted")


class RunFolder:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    info_path = property(lambda self: self.path / "run.json")
    config_path = property(lambda self: self.path / "config.yaml")
    history_path = property(lambda self: self.path / "history.csv")
    curves_path = property(lambda self: self.path / "curves.png")
    summary_path = property(lambda self: self.path / "summary.txt")
    test_metrics_path = property(lambda self: self.path / "test_metrics.json")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    lock_path = property(lambda self: self.path / ".lock")

    def checkpoint(self, name: str) -> Path:
        if name not in CHECKPOINT_NAMES:
            raise ConfigError(f"unknown checkpoint {name!r}; choose one of: {', '.join(CHECKPOINT_NAMES)}.")
        return self.checkpoints_dir / f"{name}.ckpt"

    @staticmethod
    def default_path(config: TrainConfig, root: Path = Path("runs")) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        # A folder dataset is named by its last folder: folder:~/photos/pets -> folder-pets, no path separators.
        dataset = config.dataset
        if dataset.startswith(FOLDER_PREFIX):
            dataset = "folder-" + (Path(dataset.removeprefix(FOLDER_PREFIX)).expanduser().resolve().name or "root")
        path = root / f"{config.model}-{dataset}-{stamp}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = root / f"{config.model}-{dataset}-{stamp}-{suffix}"
        return path

    @staticmethod
    def check_can_create(path: Path) -> None:
        """Fail before any training if `path` cannot become a new run folder; creates nothing."""
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"output folder {path} is an existing file; choose another --out.")
            if any(path.iterdir()):
                raise ConfigError(
                    f"output folder {path} already exists and is not empty; choose another --out, "
                    f"or continue that run with --resume {path}."
                )
        ancestor = path
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise ConfigError(f"cannot create output folder {path}: {ancestor} is a file, not a folder.")
        try:
            with tempfile.TemporaryFile(dir=ancestor):
                pass
        except OSError as error:
            raise ConfigError(
                f"cannot write to output folder {path} ({error.strerror}); choose another --out."
            ) from None

    @classmethod
    def create(cls, path: Path, info: dict[str, Any]) -> RunFolder:
        cls.check_can_create(path)
        run = cls(path)
        run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        run.write_info({"format": RUN_FORMAT, **info})
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunFolder:
        """Open an existing run folder, refusing anything that is not one written by this version's format."""
        run = cls(path)
        if not run.path.is_dir():
            raise RunFolderError(f"{run.path} is not a folder; pass the run folder that `seqvision train` printed.")
        if not run.info_path.is_file() or not run.config_path.is_file():
            raise RunFolderError(
                f"{run.path} is not a seqvision run folder (it has no run.json and config.yaml); "
                "pass the folder that `seqvision train` printed."
            )
        info = run.read_info()
        if info.get("format") != RUN_FORMAT:
            raise RunFolderError(
                f"{run.path} was written in run-folder format {info.get('format')!r}, and this version of "
                f"seqvision reads format {RUN_FORMAT}; use the seqvision version that wrote it, or train again."
            )
        return run

    def read_info(self) -> dict[str, Any]:
        try:
            info = json.loads(self.info_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise RunFolderError(f"cannot read {self.info_path}: {error}; the run folder is damaged.") from None
        if not isinstance(info, dict):
            raise RunFolderError(f"{self.info_path} is not a seqvision run description.")
        return info

    def write_info(self, info: dict[str, Any]) -> None:
        write_json_atomic(self.info_path, info)

    def update_info(self, **changes: Any) -> None:
        self.write_info({**self.read_info(), **changes})

    def load_config(self) -> TrainConfig:
        return TrainConfig.load(self.config_path)

    def resume_checkpoint(self) -> Path:
        """The newest resumable checkpoint: the Ctrl-C one if it is newer than the last end-of-epoch one."""
        candidates = [p for p in (self.checkpoint("interrupted"), self.checkpoint("last")) if p.is_file()]
        if not candidates:
            raise RunFolderError(
                f"{self.path} has no checkpoint to resume from (it stopped before its first epoch ended); "
                "start a new run instead."
            )
        return max(candidates, key=lambda p: p.stat().st_mtime_ns)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for one training process; refuse if another live process holds it.

        flock locks belong to the open file, so the kernel drops them when their process dies, however it
        dies: a .lock file left by a killed process is stale by construction and is simply taken over."""
        with open(self.lock_path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise RunLockedError(
                    f"{self.path} is being trained by another process (pid {holder}); wait for it to finish or "
                    f"stop it (kill {holder}) before training in this folder."
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            yield
