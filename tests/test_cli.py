"""The command line: clear errors before any training, exit status 2, and a fast --help."""

import subprocess
import sys

import pytest

from seqvision.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "transformer"], "unknown model 'transformer'; available models: bilstm, cnn"),
        (["--dataset", "cifar"], "cifar"),
        (["--lr", "0"], "--lr must be positive"),
        (["--epochs", "0"], "--epochs must be positive"),
        (["--batch-size", "-8"], "--batch-size must be positive"),
        (["--hidden", "0"], "--hidden must be positive"),
        (["--dropout", "1"], r"--dropout must be in [0, 1)"),
        (["--optimizer", "adagrad"], "adam, rmsprop, sgd"),
        (["--model", "cnn", "--scan", "pixels"], "model cnn cannot read images with --scan pixels"),
        (["--model", "renet", "--pooling", "attention"], "model renet does not support --pooling attention"),
        (["--model", "cnn", "--layers", "2"], "model cnn has no --layers option"),
        (["--init", "xavier"], "unknown --init 'xavier'"),
        (["--config", "seed-42"], "no config file 'seed-42' and no preset of that name"),
    ],
)
def test_bad_training_options_fail_before_training(capsys, tmp_path, argv, message):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", *argv, "--out", str(out))
    assert code == 2
    assert message in err
    assert not out.exists(), "nothing is written for a refused configuration"


def test_unknown_dataset_lists_the_valid_ones(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--dataset", "cifar", "--out", str(tmp_path / "run"))
    assert code == 2 and "digits" in err and "mnist" in err


def test_unwritable_output_folder(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--out", str(blocker / "run"))
    assert code == 2 and "is a file, not a folder" in err


def test_existing_non_empty_output_folder_is_not_overwritten(capsys, tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--out", str(tmp_path))
    assert code == 2 and "already exists and is not empty" in err and "--resume" in err
    assert (tmp_path / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("command", [["eval"], ["train", "--resume"]])
def test_a_folder_that_is_not_a_run(capsys, tmp_path, command):
    code, _, err = run_cli(capsys, *command, str(tmp_path))
    assert code == 2 and "is not a seqvision run folder" in err


def test_help_does_not_import_torch():
    probe = "import sys, seqvision.cli; seqvision.cli.build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_models_lists_parameter_counts(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "lstm" in out and "82,186" in out


def test_gpu_without_a_gpu_is_refused_before_training(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--accelerator", "gpu", "--out", str(out))
    assert code == 2 and "no CUDA GPU is visible; use auto or cpu" in err
    assert not out.exists()


def test_datasets_lists_the_registry(capsys):
    code, out, _ = run_cli(capsys, "datasets")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == [
        "cifar10", "digits", "emnist-digits", "emnist-letters", "fashion-mnist", "kmnist", "mnist", "folder:PATH"]


def test_train_then_eval_from_the_command_line(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "train", "--dataset", "digits", "--epochs", "1", "--hidden", "16",
                              "--out", str(out), "--no-progress")
    assert code == 0 and "test accuracy" in stdout and f"run folder: {out}" in stdout
    code, stdout, _ = run_cli(capsys, "eval", str(out))
    assert code == 0 and "identical to the metrics recorded at the end of training" in stdout


def test_seqvision_warnings_are_one_line(capsys, tmp_path):
    out = tmp_path / "run"
    quiet = ("--no-progress", "--no-report")
    assert run_cli(capsys, "train", "--dataset", "digits", "--hidden", "16", "--epochs", "1", *quiet,
                   "--out", str(out))[0] == 0
    first_epoch = (out / "checkpoints" / "last.ckpt").read_bytes()
    assert run_cli(capsys, "train", "--resume", str(out), "--epochs", "2", *quiet)[0] == 0
    (out / "checkpoints" / "last.ckpt").write_bytes(first_epoch)
    code, stdout, err = run_cli(capsys, "eval", str(out), "--checkpoint", "last")
    assert code == 0 and "(last checkpoint, epoch 1)" in stdout
    assert err.startswith(f"warning: {out / 'checkpoints' / 'last.ckpt'} holds epoch 1, but")
    assert err.count("\n") == 1 and "UserWarning" not in err


@pytest.mark.parametrize("command", ["models", "datasets"])
def test_listings_match_golden(capsys, golden, command):
    code, out, _ = run_cli(capsys, command)
    assert code == 0
    golden(f"cli_{command}.txt", out)
