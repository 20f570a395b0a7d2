"""The report of a real (small) run: metric files, valid non-blank pictures, an HTML page a browser loads cleanly."""

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import seqvision
from seqvision.cli import main
from seqvision.errors import ConfigError, RunFolderError
from seqvision.evaluation.report import write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# (width, height) in pixels: each figure's size in inches at 100 dpi.
EXPECTED_SIZES = {
    "curves.png": (1000, 400),
    "plots/confusion.png": (700, 600),
    "plots/confusion_normalised.png": (700, 600),
    "plots/roc.png": (1200, 550),
    "plots/lstm_inside.png": (1800, 420),
}


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "lstm"
    seqvision.train(model="lstm", dataset="digits", epochs=4, lr=0.01, out=out, progress=False)
    return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_training_writes_the_report(lstm_run):
    for name in ("report.html", "report.md", "metrics.json", "per_class.csv", "confusion_matrix.csv"):
        assert (lstm_run / name).is_file(), name


@pytest.mark.parametrize("name", [*sorted(EXPECTED_SIZES), "plots/misclassified.png"])
def test_every_picture_is_a_png_of_the_expected_size_and_not_blank(lstm_run, name):
    import matplotlib.image

    path = lstm_run / name
    width, height = png_size(path)
    if name in EXPECTED_SIZES:
        assert (width, height) == EXPECTED_SIZES[name]
    else:
        assert width == 1080 and height > 200
    pixels = matplotlib.image.imread(path)[..., :3]
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0.05, "the picture is (nearly) one colour"
    assert (pixels.mean(axis=2) < 0.5).mean() > 0.005, "the picture has (nearly) nothing drawn in dark ink"


def test_metric_files_agree_with_each_other(lstm_run):
    metrics = json.loads((lstm_run / "metrics.json").read_text())
    recorded = json.loads((lstm_run / "test_metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(recorded["test_accuracy"])
    assert metrics["test_loss"] == pytest.approx(recorded["test_loss"])
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.sum() == 360 and np.trace(matrix) / 360 == pytest.approx(metrics["test_accuracy"])
    rows = (lstm_run / "per_class.csv").read_text().splitlines()
    assert len(rows) == 1 + 10 + 2
    assert len((lstm_run / "confusion_matrix.csv").read_text().splitlines()) == 11
    assert 0 <= metrics["ece"] <= 1 and metrics["top_k_accuracy"] >= metrics["test_accuracy"]


def test_markdown_links_every_picture(lstm_run):
    text = (lstm_run / "report.md").read_text()
    for name in EXPECTED_SIZES:
        assert f"]({name})" in text and (lstm_run / name).is_file()


def test_html_is_self_contained(lstm_run):
    text = (lstm_run / "report.html").read_text()
    assert text.count('src="data:image/png;base64,') == 6
    assert "http://" not in text and "https://" not in text and "<script" not in text


def test_html_report_opens_in_headless_chromium(lstm_run, chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        problems = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("requestfailed", lambda request: problems.append(f"failed to load {request.url[:60]}"))
        page.goto((lstm_run / "report.html").as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        title = page.title()
        browser.close()
    assert problems == []
    assert len(images) == 6 and all(complete and width > 0 and height > 0 for complete, width, height in images)
    assert title.startswith("lstm on digits")


def test_report_command_rewrites_the_report(lstm_run, tmp_path, capsys):
    copy = shutil.copytree(lstm_run, tmp_path / "copy")
    (copy / "report.html").unlink()
    assert main(["report", str(copy), "--image", "5"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "macro F1" in out and "report.html" in out
    assert (copy / "report.html").is_file()


def test_a_cnn_report_has_no_lstm_picture(tmp_path):
    out = tmp_path / "cnn"
    seqvision.train(model="cnn", dataset="digits", epochs=1, out=out, progress=False)
    assert (out / "plots" / "roc.png").is_file() and not (out / "plots" / "lstm_inside.png").exists()


@pytest.fixture
def broken_copy(lstm_run, tmp_path):
    copy = shutil.copytree(lstm_run, tmp_path / "broken")
    return copy, {path: path.read_bytes() for path in copy.rglob("*") if path.is_file()}


def unchanged(files: dict[Path, bytes]) -> bool:
    return all(path.read_bytes() == data for path, data in files.items())


def test_missing_checkpoint_leaves_the_old_report(broken_copy):
    copy, files = broken_copy
    (copy / "checkpoints" / "best.ckpt").unlink()
    del files[copy / "checkpoints" / "best.ckpt"]
    with pytest.raises(RunFolderError, match="has no best checkpoint"):
        write_report(copy)
    assert unchanged(files)


def test_run_folder_of_another_format_is_refused(broken_copy):
    copy, _ = broken_copy
    info = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**info, "format": 99}))
    files = {path: path.read_bytes() for path in copy.rglob("*") if path.is_file()}
    with pytest.raises(RunFolderError, match="run-folder format 99"):
        write_report(copy)
    assert unchanged(files)


def test_dataset_that_does_not_fit_the_model_is_refused(broken_copy):
    copy, _ = broken_copy
    info = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**info, "image_shape": [28, 28]}))
    files = {path: path.read_bytes() for path in copy.rglob("*") if path.is_file()}
    with pytest.raises(RunFolderError, match=r"now has \(8, 8\) images but the run was trained on \(28, 28\)"):
        write_report(copy)
    assert unchanged(files)


def test_image_index_out_of_range(broken_copy):
    copy, files = broken_copy
    with pytest.raises(ConfigError, match="--image must be between 0 and 359"):
        write_report(copy, image_index=360)
    assert unchanged(files)


CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


def test_a_failure_while_writing_leaves_the_whole_old_report(broken_copy, monkeypatch):
    """Every file of the new report is staged beside the old one first; a failure before the swap (here the HTML
    page, the last file written) leaves every old file as it was, and no staging folder behind."""
    import seqvision.evaluation.report as report_module

    copy, files = broken_copy

    def page_that_fails(*args, **kwargs):
        raise OSError("simulated failure while writing the page")

    monkeypatch.setattr(report_module, "render_html", page_that_fails)
    with pytest.raises(OSError, match="simulated failure"):
        write_report(copy, checkpoint="last", image_index=5)  # a report that differs from the old one
    assert unchanged(files)
    assert not list(copy.glob(".report-*"))
