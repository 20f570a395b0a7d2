"""A checkpoint is enough on its own to rebuild its model, and every file that is not one is refused in one
line that names it, without ever unpickling code (API and command line, real files, no mocks)."""

import io
import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import seqvision
from seqvision.cli import main
from seqvision.errors import CheckpointError
from seqvision.runs import load_run_model, read_checkpoint, rebuild_model
from seqvision.runs.checkpoint import CHECKPOINT_FORMAT
from seqvision.runs.folder import RunFolder


class NotATensor:
    """A class only this test module defines: a pickle that refers to it needs code to load."""

    def __init__(self) -> None:
        self.value = 42


class RunsAShellCommand:
    """Unpickling this runs `command`: the file a malicious "checkpoint" would be."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("saved") / "run"
    seqvision.train(model="lstm", dataset="digits", epochs=1, hidden=16, out=out, progress=False, report=False)
    return out


@pytest.fixture
def run_copy(saved_run, tmp_path) -> Path:
    return Path(shutil.copytree(saved_run, tmp_path / "copy"))


def digits_test_set(mean: float, std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits test images, standardised as evaluation does (uint8 -> [0, 1] -> mean 0, std 1), and labels."""
    splits = seqvision.load_dataset("digits")
    images = torch.from_numpy(splits.test_images).float().div_(255.0).sub_(mean).div_(std)
    return images, torch.from_numpy(splits.test_labels).long()


# --- a checkpoint alone rebuilds its model ---------------------------------------------------------------------


def test_a_checkpoint_alone_rebuilds_the_same_model(saved_run, tmp_path):
    alone = tmp_path / "elsewhere" / "model.ckpt"
    alone.parent.mkdir()
    shutil.copyfile(RunFolder(saved_run).checkpoint("best"), alone)
    assert sorted(p.name for p in alone.parent.iterdir()) == ["model.ckpt"], "no run.json or config.yaml beside it"

    model, description = rebuild_model(alone)
    reference, where = load_run_model(RunFolder(saved_run), "best")
    assert not model.training, "rebuilt models come in eval mode"
    assert where == {"epoch": 1, "checkpoint": "best"}
    assert description.epoch == 1

    info = json.loads(RunFolder(saved_run).info_path.read_text())
    assert description.config.model == "lstm"
    assert description.config.hidden == 16
    assert description.config.dataset == "digits"
    assert description.config.epochs == 1
    assert description.image_shape == (8, 8)
    assert description.num_classes == 10
    assert description.classes == tuple(str(digit) for digit in range(10))
    assert description.normalisation.mean == info["normalisation"]["mean"]
    assert description.normalisation.std == info["normalisation"]["std"]

    saved = read_checkpoint(alone)
    section = saved["seqvision"]
    assert section["format"] == CHECKPOINT_FORMAT
    assert section["model"] == "lstm"
    assert section["config"]["hidden"] == 16
    assert {"torch", "python", "numpy"} <= set(section["random_state"])

    inputs, labels = digits_test_set(description.normalisation.mean, description.normalisation.std)
    with torch.no_grad():
        logits = model(inputs[:32])
        expected = reference(inputs[:32])
        assert logits.shape == (32, 10)
        assert torch.equal(logits, expected)
        # ...and it is the trained model: it scores what training recorded on the whole test set.
        accuracy = (model(inputs).argmax(dim=1) == labels).double().mean().item()
    recorded = json.loads(RunFolder(saved_run).test_metrics_path.read_text())
    assert accuracy == pytest.approx(recorded["test_accuracy"], abs=1e-12)


# --- files that are not seqvision checkpoints -----------------------------------------------------------------


def random_bytes(path: Path, real: bytes) -> None:
    path.write_bytes(os.urandom(4096))


def empty_file(path: Path, real: bytes) -> None:
    path.write_bytes(b"")


def first_half(path: Path, real: bytes) -> None:
    path.write_bytes(real[: len(real) // 2])


def plain_dict(path: Path, real: bytes) -> None:
    torch.save({"state_dict": {"weight": torch.zeros(3)}, "epoch": 0}, path)


def object_of_a_test_class(path: Path, real: bytes) -> None:
    torch.save({"x": NotATensor(), "seqvision": {"format": CHECKPOINT_FORMAT}, "state_dict": {}}, path)


def shell_command(path: Path, real: bytes) -> None:
    marker = path.parent / "pwned-marker"
    torch.save({"x": RunsAShellCommand(f"echo pwned > {marker}"), "seqvision": {"format": CHECKPOINT_FORMAT},
                "state_dict": {}}, path)


NOT_CHECKPOINTS: dict[str, Callable[[Path, bytes], None]] = {
    "random bytes": random_bytes,
    "empty file": empty_file,
    "first half of a checkpoint": first_half,
    "torch.save of a plain dict": plain_dict,
    "pickled object of a test class": object_of_a_test_class,
    "pickle that runs a shell command": shell_command,
}


def check_refusal(message: str, path: Path) -> None:
    assert "\n" not in message, f"one line expected, got: {message!r}"
    assert str(path) in message, f"the message should name {path}: {message!r}"
    assert "weights_only" not in message, "never suggest loading with weights_only=False"
    assert "Traceback" not in message
    assert not (path.parent / "pwned-marker").exists(), "the pickled shell command must never run"


def test_the_shell_command_pickle_would_run_if_loaded_unsafely(tmp_path):
    """The control for the tests below: this file does run its command when unpickled the unsafe way."""
    path = tmp_path / "evil.ckpt"
    shell_command(path, b"")
    torch.load(path, weights_only=False)
    assert (tmp_path / "pwned-marker").read_text() == "pwned\n"


@pytest.fixture(params=list(NOT_CHECKPOINTS))
def kind(request) -> str:
    return request.param


def test_read_checkpoint_refuses(kind, saved_run, tmp_path):
    path = tmp_path / "foreign.ckpt"
    NOT_CHECKPOINTS[kind](path, RunFolder(saved_run).checkpoint("best").read_bytes())
    with pytest.raises(CheckpointError) as refused:
        read_checkpoint(path)
    check_refusal(str(refused.value), path)
    with pytest.raises(CheckpointError) as refused:
        rebuild_model(path)
    check_refusal(str(refused.value), path)


def test_evaluate_refuses(kind, run_copy):
    best = RunFolder(run_copy).checkpoint("best")
    NOT_CHECKPOINTS[kind](best, best.read_bytes())
    with pytest.raises(CheckpointError) as refused:
        seqvision.evaluate(run_copy)
    check_refusal(str(refused.value), best)


def test_resume_refuses(kind, run_copy):
    run = RunFolder(run_copy)
    last = run.checkpoint("last")
    NOT_CHECKPOINTS[kind](last, last.read_bytes())
    history = run.history_path.read_bytes()
    with pytest.raises(CheckpointError) as refused:
        seqvision.train(resume=run_copy, epochs=3, progress=False, report=False)
    check_refusal(str(refused.value), last)
    assert run.history_path.read_bytes() == history, "a refused resume trains nothing"
    assert run.read_info()["status"] == "finished"


@pytest.mark.parametrize("command", ["eval", "resume"])
def test_command_line_refuses(kind, command, run_copy, capsys):
    run = RunFolder(run_copy)
    target = run.checkpoint("best" if command == "eval" else "last")
    NOT_CHECKPOINTS[kind](target, target.read_bytes())
    argv = ["eval", str(run_copy)] if command == "eval" else ["train", "--resume", str(run_copy), "--epochs", "3",
                                                              "--no-progress", "--no-report"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    check_refusal(errors[0], target)


def first_half_of_a_large_checkpoint(path: Path, real: bytes) -> None:
    """A checkpoint of the size a default run writes (hundreds of KiB), cut in half."""
    buffer = io.BytesIO()
    torch.save({"state_dict": {"model.weight": torch.randn(200_000)}, "seqvision": {"format": CHECKPOINT_FORMAT}},
               buffer)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def noise_without_a_pickle_opcode(path: Path, real: bytes) -> None:
    path.write_bytes(b"\xb3" + random.Random(0).randbytes(4095))  # 0xb3 is no pickle opcode


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        pytest.param(empty_file, "the file is truncated", id="empty file"),
        pytest.param(first_half_of_a_large_checkpoint, "the file is truncated", id="first half, large"),
        pytest.param(first_half, "the file is truncated", id="first half, small"),
        pytest.param(noise_without_a_pickle_opcode, "it is not a PyTorch checkpoint file", id="noise"),
        pytest.param(plain_dict, "is a PyTorch file but not a seqvision checkpoint", id="plain dict"),
        pytest.param(object_of_a_test_class, "it holds pickled Python objects that could run code", id="object"),
        pytest.param(shell_command, "it holds pickled Python objects that could run code", id="shell command"),
    ],
)
def test_the_refusal_names_the_cause(make, cause, saved_run, tmp_path):
    path = tmp_path / "foreign.ckpt"
    make(path, RunFolder(saved_run).checkpoint("best").read_bytes())
    with pytest.raises(CheckpointError) as refused:
        read_checkpoint(path)
    check_refusal(str(refused.value), path)
    assert cause in str(refused.value)


def test_a_newer_format_is_refused_by_name(saved_run, tmp_path):
    saved = torch.load(RunFolder(saved_run).checkpoint("best"), map_location="cpu", weights_only=True)
    saved["seqvision"]["format"] = 99
    path = tmp_path / "future.ckpt"
    torch.save(saved, path)
    with pytest.raises(CheckpointError) as refused:
        rebuild_model(path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message
    assert "checkpoint format 99" in message and f"format {CHECKPOINT_FORMAT} this version" in message
    assert "upgrade seqvision" in message
